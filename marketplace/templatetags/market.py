"""Seller avatars, star ratings and the order page's review box (templates/marketplace/_order_review.html)."""

import zlib

from django import template

from marketplace.reviews import Rating, order_is_reviewable, review_of_order

register = template.Library()

AVATAR_TONES = 8


@register.filter
def initials(name: str) -> str:
    """ "Sam Seller" -> "SS", "bea" -> "B"."""
    words = [word for word in (name or "").split() if word[:1].isalnum()]
    return "".join(word[0] for word in words[:2]).upper() or "?"


@register.filter
def avatar_tone(key: str) -> int:
    """A stable colour (0-7, classes .avatar-tone-N in marketplace.css) for a member without a picture."""
    return zlib.crc32((key or "").encode()) % AVATAR_TONES


@register.filter
def stars(rating: int) -> list[str]:
    """A review's 1-5 as five Bootstrap icon names."""
    return ["star-fill" if n <= rating else "star" for n in range(1, 6)]


@register.simple_tag
def rating_of(average, count) -> Rating:
    return Rating.of(average, count or 0)


@register.inclusion_tag("marketplace/_order_review_box.html", takes_context=True)
def order_review_box(context, order):
    """The order's review, and the form its buyer (or the reply form its seller) may fill in.
    Reads nothing for an order that cannot be reviewed yet (the page's usual case)."""
    request = context["request"]
    user = request.user
    shown = order_is_reviewable(order) and order.is_participant(user)
    review = review_of_order(order) if shown else None
    posted = getattr(request, "review_forms", {})
    return {
        "shown": shown,
        "order": order,
        "review": review,
        "is_buyer": order.is_buyer(user),
        "is_seller": order.is_seller(user),
        "review_form": posted.get("review"),
        "reply_form": posted.get("reply"),
        "csrf_token": context.get("csrf_token"),
    }
