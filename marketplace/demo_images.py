"""Pictures for the demo data, drawn with Pillow when `seed_demo` runs: nothing downloaded,
nothing licensed. A category has a palette and a motif (a logo kit, a code window, two speech
bubbles, a play button, a rising chart); a listing's images are that motif on its gradient with a
caption, in up to three variations; a member's avatar is their initials on a colour.
"""

import io
import math
import random

from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Two colours of the gradient and an accent, per category slug.
PALETTES = {
    "design": ((255, 122, 89), (214, 51, 132), (255, 214, 102)),
    "development": ((32, 44, 92), (13, 110, 253), (99, 230, 190)),
    "writing-translation": ((25, 135, 84), (32, 201, 151), (255, 243, 205)),
    "video-animation": ((111, 66, 193), (232, 62, 140), (255, 193, 7)),
    "marketing": ((253, 126, 20), (220, 53, 69), (255, 255, 255)),
}
DEFAULT_PALETTE = ((73, 80, 87), (13, 110, 253), (255, 255, 255))
WHITE = (255, 255, 255)


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's own FreeType font: the same everywhere


def _gradient(size: tuple[int, int], start: tuple, end: tuple, angle: float) -> Image.Image:
    """A linear gradient from `start` to `end`, turned by `angle` degrees."""
    side = int(math.hypot(*size)) + 2
    mask = Image.linear_gradient("L").resize((side, side)).rotate(angle, resample=Image.Resampling.BICUBIC)
    left, top = (side - size[0]) // 2, (side - size[1]) // 2
    mask = mask.crop((left, top, left + size[0], top + size[1]))
    return Image.composite(Image.new("RGB", size, end), Image.new("RGB", size, start), mask)


def _bokeh(image: Image.Image, seed: int, accent: tuple) -> None:
    """Soft translucent circles over the background."""
    rng = random.Random(seed)  # noqa: S311  (shapes of a picture, not a secret)
    width, height = image.size
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(7):
        radius = rng.randint(width // 12, width // 4)
        x, y = rng.randint(-radius, width), rng.randint(-radius, height)
        colour = WHITE if rng.random() < 0.6 else accent
        draw.ellipse((x, y, x + radius * 2, y + radius * 2), fill=(*colour, rng.randint(18, 46)))
    image.paste(layer.filter(ImageFilter.GaussianBlur(width / 60)), (0, 0), layer.filter(ImageFilter.GaussianBlur(8)))


def _shadowed(image: Image.Image, box: tuple, radius: int, fill) -> None:
    """A rounded panel with a soft drop shadow."""
    shadow = Image.new("RGBA", image.size, (0, 0, 0, 0))
    x0, y0, x1, y1 = box
    ImageDraw.Draw(shadow).rounded_rectangle((x0 + 6, y0 + 12, x1 + 6, y1 + 12), radius, fill=(0, 0, 0, 70))
    image.paste(shadow.filter(ImageFilter.GaussianBlur(12)), (0, 0), shadow.filter(ImageFilter.GaussianBlur(12)))
    ImageDraw.Draw(image).rounded_rectangle(box, radius, fill=fill)


def _motif_design(image, box, palette, variant, seed):
    draw = ImageDraw.Draw(image, "RGBA")
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) // 2, (y0 + y1) // 2, min(x1 - x0, y1 - y0) // 4
    if seed % 2:  # another listing of the category: its shapes in other colours
        palette = (palette[1], palette[2], palette[0])
    draw.ellipse((cx - r * 2, cy - r, cx, cy + r), fill=(*WHITE, 235))
    draw.rounded_rectangle((cx - r // 2, cy - r, cx + r * 3 // 2, cy + r), r // 3, fill=(*palette[2], 230))
    draw.polygon([(cx + r, cy + r), (cx + r * 2, cy - r), (cx + r * 3, cy + r)], fill=(*palette[1], 220))
    swatches = [palette[0], palette[1], palette[2], WHITE, (33, 37, 41)]
    size = (x1 - x0) // 9
    left = cx - (size * len(swatches) + 12 * (len(swatches) - 1)) // 2
    for n, colour in enumerate(swatches[: 3 + variant]):
        sx = left + n * (size + 12)
        draw.rounded_rectangle((sx, y1 - size, sx + size, y1), 10, fill=colour, outline=(*WHITE, 200), width=3)


def _motif_development(image, box, palette, variant, seed):
    x0, y0, x1, y1 = box
    _shadowed(image, box, 18, (24, 30, 48))
    draw = ImageDraw.Draw(image, "RGBA")
    draw.rounded_rectangle((x0, y0, x1, y0 + 36), 18, fill=(45, 52, 74))
    draw.rectangle((x0, y0 + 20, x1, y0 + 36), fill=(45, 52, 74))
    for n, colour in enumerate(((255, 95, 86), (255, 189, 46), (39, 201, 63))):
        draw.ellipse((x0 + 18 + n * 24, y0 + 11, x0 + 32 + n * 24, y0 + 25), fill=colour)
    rng = random.Random(seed * 10 + variant)  # noqa: S311  (shapes of a picture, not a secret)
    colours = [palette[2], (130, 170, 255), (255, 203, 107), (199, 146, 234), (240, 240, 240)]
    y, indent = y0 + 58, 0
    while y < y1 - 24:
        indent = max(0, min(3, indent + rng.choice((-1, 0, 0, 1))))
        x = x0 + 28 + indent * 26
        for _ in range(rng.randint(1, 3)):
            length = rng.randint(30, 120)
            if x + length > x1 - 24:
                break
            draw.rounded_rectangle((x, y, x + length, y + 12), 6, fill=rng.choice(colours))
            x += length + 12
        y += 28


def _motif_writing(image, box, palette, variant, seed):
    x0, y0, x1, y1 = box
    width = (x1 - x0) * 55 // 100
    _shadowed(image, (x0, y0, x0 + width, y1), 16, WHITE)
    draw = ImageDraw.Draw(image, "RGBA")
    draw.text((x0 + 28, y0 + 22), "Aa", font=_font(64), fill=palette[0])
    rng = random.Random(seed * 10 + variant)  # noqa: S311  (shapes of a picture, not a secret)
    for y in range(y0 + 110, y1 - 20, 26):
        draw.rounded_rectangle((x0 + 28, y, x0 + rng.randint(width // 2, width - 28), y + 10), 5, fill=(206, 212, 218))
    bubbles = (("EN", palette[1]), ("ES", palette[0])) if variant != 1 else (("ES", palette[0]), ("ok", palette[1]))
    for n, (label, colour) in enumerate(bubbles):
        bx, by = x0 + width + 30 + n * 40, y0 + 30 + n * ((y1 - y0) // 2)
        bw, bh = x1 - bx - n * 10, (y1 - y0) // 3
        _shadowed(image, (bx, by, bx + bw, by + bh), 28, colour)
        draw.polygon([(bx + 30, by + bh - 2), (bx + 60, by + bh - 2), (bx + 24, by + bh + 30)], fill=colour)
        draw.text((bx + bw // 2, by + bh // 2), label, font=_font(bh // 2), fill=WHITE, anchor="mm")


def _motif_video(image, box, palette, variant, seed):
    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(image, "RGBA")
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2 - 20
    r = min(x1 - x0, y1 - y0) // 3
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*WHITE, 235))
    draw.polygon([(cx - r // 3, cy - r // 2), (cx - r // 3, cy + r // 2), (cx + r // 2, cy)], fill=palette[1])
    strip_top = y1 - 56
    draw.rectangle((x0 - 60, strip_top, x1 + 60, y1), fill=(20, 20, 30, 210))
    for x in range(x0 - 50, x1 + 60, 34):
        draw.rounded_rectangle((x, strip_top + 8, x + 18, strip_top + 20), 3, fill=(*WHITE, 200))
        draw.rounded_rectangle((x, y1 - 20, x + 18, y1 - 8), 3, fill=(*WHITE, 200))
    draw.rounded_rectangle((x0, y0, x0 + (x1 - x0) * (variant + 1) // 4, y0 + 10), 5, fill=palette[2])


def _motif_marketing(image, box, palette, variant, seed):
    x0, y0, x1, y1 = box
    _shadowed(image, box, 18, (*WHITE,))
    draw = ImageDraw.Draw(image, "RGBA")
    bars = [0.3, 0.45, 0.4, 0.62, 0.75, 0.9][: 4 + min(variant, 2)]
    gap = 18
    bar_width = (x1 - x0 - 60 - gap * (len(bars) - 1)) // len(bars)
    points = []
    for n, share in enumerate(bars):
        bx = x0 + 30 + n * (bar_width + gap)
        top = y1 - 30 - int((y1 - y0 - 80) * share)
        draw.rounded_rectangle((bx, top, bx + bar_width, y1 - 30), 8, fill=palette[0] if n % 2 else palette[1])
        points.append((bx + bar_width // 2, top - 18))
    draw.line(points, fill=(33, 37, 41), width=6, joint="curve")
    ex, ey = points[-1]
    draw.polygon([(ex - 14, ey + 4), (ex + 6, ey - 18), (ex + 10, ey + 10)], fill=(33, 37, 41))


MOTIFS = {
    "design": _motif_design,
    "development": _motif_development,
    "writing-translation": _motif_writing,
    "video-animation": _motif_video,
    "marketing": _motif_marketing,
}


def _picture(size: tuple[int, int], category: str, variant: int, seed: int) -> Image.Image:
    start, end, accent = PALETTES.get(category, DEFAULT_PALETTE)
    if variant == 1:
        start, end = end, start
    image = _gradient(size, start, end, angle=(35 + 50 * variant) % 180)
    _bokeh(image, seed, accent)
    width, height = size
    margin_x, margin_y = width // 6, height // 7
    box = (margin_x, margin_y, width - margin_x, height - margin_y - (height // 10 if variant != 2 else 0))
    MOTIFS.get(category, _motif_design)(image, box, (start, end, accent), variant, seed)
    return image


def _jpeg(image: Image.Image, quality: int = 82) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality, optimize=True, progressive=True)
    return out.getvalue()


def listing_picture(*, category: str, caption: str, variant: int = 0, seed: int = 0) -> bytes:
    """An 800x600 JPEG for a listing: the category's motif and, on the first, the caption."""
    image = _picture((800, 600), category, variant, seed)
    if caption and variant != 2:
        draw = ImageDraw.Draw(image, "RGBA")
        font = _font(34)
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        x, y = 40, 600 - 40 - (bottom - top) - 28
        draw.rounded_rectangle((x, y, x + right - left + 44, y + bottom - top + 28), 22, fill=(0, 0, 0, 120))
        draw.text((x + 22, y + 14 - top), caption, font=font, fill=WHITE)
    return _jpeg(image)


def category_picture(*, category: str) -> bytes:
    """A 600x450 JPEG for a category tile (its name is written over it by the page)."""
    return _jpeg(_picture((600, 450), category, variant=0, seed=len(category)), quality=80)


def avatar_picture(*, initials: str, category: str) -> bytes:
    """A 256x256 JPEG: the initials on the palette of the seller's main category."""
    start, end, _ = PALETTES.get(category, DEFAULT_PALETTE)
    image = _gradient((256, 256), start, end, angle=45)
    draw = ImageDraw.Draw(image)
    draw.text((128, 132), initials, font=_font(104), fill=WHITE, anchor="mm")
    return _jpeg(image, quality=85)
