"""Idempotent demo data for `make run`: safe to run on every start, it never duplicates.

Needs the providers reachable (in embedded mode: the server running, since it serves
the sandbox); `make run` seeds once the server listens.
"""

from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand

from backoffice.roles import SUPPORT_AGENT, SUPPORT_LEAD
from marketplace.demo_images import avatar_picture, category_picture, listing_picture
from marketplace.listings import MilestoneSpec, listing_create
from marketplace.models import Category, Listing, ListingImage, User
from marketplace.services import user_airtm_link
from marketplace.templatetags.market import initials
from offerhub.errors import ServiceError
from payments.balances import Actor
from payments.deposits import deposits_sync
from payments.ledger import user_accounts
from payments.models import Wallet
from payments.stellar import StellarError
from payments.wallets import PlatformNotReady, platform_bootstrap, wallet_activate, wallet_ensure

DEMO_PASSWORD = "offerhub-demo"  # noqa: S105  (public on purpose: demo data only)
NO_FUNDS = Decimal("0")
# Support staff are staff users in a role's group (backoffice/roles.py), never superusers.
DEMO_USERS = [
    {"email": "buyer@demo.offerhub.test", "display_name": "Bea Buyer", "role": None, "funds": Decimal("500")},
    {"email": "seller@demo.offerhub.test", "display_name": "Sam Seller", "role": None, "funds": NO_FUNDS},
    {"email": "lucia@demo.offerhub.test", "display_name": "Lucía Ortega", "role": None, "funds": NO_FUNDS},
    {"email": "kai@demo.offerhub.test", "display_name": "Kai Motion Studio", "role": None, "funds": NO_FUNDS},
    {"email": "support@demo.offerhub.test", "display_name": "Sofia Support", "role": SUPPORT_AGENT, "funds": NO_FUNDS},
    {"email": "lead@demo.offerhub.test", "display_name": "Leo Lead", "role": SUPPORT_LEAD, "funds": NO_FUNDS},
]
ROLE_LABELS = {None: "buyer and seller", SUPPORT_AGENT: "support agent", SUPPORT_LEAD: "support lead"}

DEMO_BUYER = "buyer@demo.offerhub.test"
DEMO_SELLER = "seller@demo.offerhub.test"
# The sellers' profiles: the words on their page, and the category whose colours their avatar takes.
DEMO_SELLERS = {
    DEMO_SELLER: (
        "design",
        "Designer and Django developer in Lisbon. Ten years of brand identities and fast, accessible websites "
        "for small businesses; I answer within a day.",
    ),
    "lucia@demo.offerhub.test": (
        "writing-translation",
        "Native Spanish translator and editor from Bogotá. Websites, apps and marketing copy, localised for "
        "Latin American readers, with a glossary of your terms.",
    ),
    "kai@demo.offerhub.test": (
        "video-animation",
        "A two-person motion studio: explainer videos, logo animations and the social posts that go with them. "
        "Scripts included, revisions until it feels right.",
    ),
}
DEMO_CATEGORIES = [
    ("design", "Design", "palette"),
    ("development", "Development", "code-slash"),
    ("writing-translation", "Writing & translation", "translate"),
    ("video-animation", "Video & animation", "camera-reels"),
    ("marketing", "Marketing", "megaphone"),
]
DEMO_LISTINGS = [
    {
        "title": "A logo and brand kit for your small business",
        "seller": DEMO_SELLER,
        "caption": "Logo & brand kit",
        "images": 3,
        "category": "design",
        "price": "180.00",
        "delivery_days": 5,
        "description": "Three logo concepts to choose from, then the chosen one polished into a small brand kit: "
        "colour palette, two typefaces and the logo in every format you need (SVG, PNG, favicon).",
        "delivery_terms": "Files delivered as a ZIP link. Two rounds of revisions on the chosen concept.",
        "milestones": [("Three logo concepts", "60.00"), ("Final logo and brand kit", "120.00")],
    },
    {
        "title": "A landing page built with Django and Bootstrap",
        "seller": DEMO_SELLER,
        "caption": "Landing page, launched",
        "images": 2,
        "category": "development",
        "price": "650.00",
        "delivery_days": 14,
        "description": "A fast, accessible landing page for your product, with a contact form and analytics, "
        "deployed to your server or handed over as a Git repository.",
        "delivery_terms": "A mock-up first, then the build on a preview URL, then the launch.",
        "milestones": [("Mock-up", "150.00"), ("Build on a preview URL", "350.00"), ("Launch", "150.00")],
    },
    {
        "title": "One hour of Python code review",
        "seller": DEMO_SELLER,
        "caption": "Python code review",
        "images": 1,
        "category": "development",
        "price": "75.00",
        "delivery_days": 2,
        "description": "I read the module or pull request you point me at and send written notes: bugs, "
        "readability, tests worth adding. Django, FastAPI and data pipelines welcome.",
        "delivery_terms": "Notes as a Markdown file or as comments on your pull request.",
    },
    {
        "title": "Translate your website from English to Spanish",
        "seller": "lucia@demo.offerhub.test",
        "caption": "English to Spanish",
        "images": 3,
        "category": "writing-translation",
        "price": "95.00",
        "delivery_days": 3,
        "description": "Natural, native Spanish for up to 2,000 words of web copy, adapted for Latin American "
        "readers. Glossary of your product terms included.",
    },
    {
        "title": "Proofread and edit up to 5,000 words",
        "seller": "lucia@demo.offerhub.test",
        "caption": "Proofreading",
        "images": 1,
        "category": "writing-translation",
        "price": "45.00",
        "delivery_days": 2,
        "description": "Spelling, grammar, clarity and consistency for your article, report or thesis chapter, "
        "with tracked changes so you keep the final say.",
    },
    {
        "title": "A 60-second explainer video",
        "seller": "kai@demo.offerhub.test",
        "caption": "60-second explainer",
        "images": 3,
        "category": "video-animation",
        "price": "320.00",
        "delivery_days": 10,
        "description": "A short animated video that explains what your product does: script, voice-over and "
        "motion graphics, in landscape and square formats for social media.",
        "milestones": [("Script and storyboard", "120.00"), ("Final video", "200.00")],
    },
    {
        "title": "SEO audit of your online shop",
        "seller": "kai@demo.offerhub.test",
        "caption": "SEO audit",
        "images": 2,
        "category": "marketing",
        "price": "120.00",
        "delivery_days": 4,
        "description": "A prioritised list of what keeps your shop from ranking: page speed, titles, structured "
        "data, broken links, and the ten fixes worth doing first.",
    },
    {
        "title": "A set of 12 custom icons for your app",
        "seller": DEMO_SELLER,
        "caption": "12 custom icons",
        "images": 2,
        "category": "design",
        "price": "140.00",
        "delivery_days": 6,
        "description": "Twelve icons drawn for your product in one consistent style, on a 24-pixel grid, "
        "as SVG and as an icon font.",
        "delivery_terms": "Sketches first, then the final set. One round of changes per icon.",
        "milestones": [("Sketches of all twelve", "40.00"), ("Final icon set", "100.00")],
    },
    {
        "title": "Four blog posts for your online shop, in Spanish",
        "seller": "lucia@demo.offerhub.test",
        "caption": "Blog posts in Spanish",
        "images": 2,
        "category": "writing-translation",
        "price": "160.00",
        "delivery_days": 7,
        "description": "Four posts of about 800 words each, researched and written in Spanish for your "
        "customers, with titles and meta descriptions ready for search engines.",
    },
    {
        "title": "An animated logo intro for your videos",
        "seller": "kai@demo.offerhub.test",
        "caption": "Animated logo intro",
        "images": 2,
        "category": "video-animation",
        "price": "85.00",
        "delivery_days": 3,
        "description": "Your logo brought to life in a five-second intro with sound, for YouTube, Reels and "
        "presentations, in 4K and square formats.",
    },
    {
        "title": "A month of social media posts",
        "seller": "kai@demo.offerhub.test",
        "caption": "30 days of posts",
        "images": 1,
        "category": "marketing",
        "price": "240.00",
        "delivery_days": 10,
        "description": "Twenty posts for Instagram and LinkedIn, designed and written for your brand, with a "
        "calendar of when to publish each one.",
        "milestones": [("Calendar and first five posts", "80.00"), ("The other fifteen posts", "160.00")],
    },
]


class Command(BaseCommand):
    help = "Create the demo users with their wallets and demo funds if missing; print the logins."

    def handle(self, *args, **options):
        created = 0
        users = []
        for spec in DEMO_USERS:
            user = User.objects.filter(email__iexact=spec["email"]).first()
            if user is None:
                user = User.objects.create_user(spec["email"], DEMO_PASSWORD, display_name=spec["display_name"])
                created += 1
            if spec["role"]:
                self._staff(user, spec["role"])
            users.append((user, spec))
        self.stdout.write(self.style.SUCCESS(f"Demo users ready ({created} created)."))
        self._listings()
        try:
            self._money(users)
        except (PlatformNotReady, StellarError) as error:
            self.stderr.write(
                f"Demo wallets and funds skipped: the payment providers are not reachable ({error}). "
                "In embedded mode start the server first (`make run` does this for you)."
            )
        self.stdout.write(f"Demo logins (password for each: {DEMO_PASSWORD}):")
        for _, spec in users:
            where = ", backoffice at /admin/" if spec["role"] else ""
            self.stdout.write(f"  {spec['email']:<30} {ROLE_LABELS[spec['role']]}{where}")

    def _staff(self, user: User, role: str) -> None:
        """Staff in exactly its role's group; a superuser left by an older seed loses that."""
        if not user.is_staff or user.is_superuser:
            user.is_staff, user.is_superuser = True, False
            user.save(update_fields=["is_staff", "is_superuser"])
        user.groups.set([Group.objects.get(name=role)])

    def _money(self, users) -> None:
        from payments.balances import sandbox_mint

        platform_bootstrap()
        for user, spec in users:
            wallet = wallet_activate(wallet=wallet_ensure(user=user))
            available, _ = user_accounts(user)
            sandbox = "stellar" in settings.SANDBOX_PROVIDERS  # real networks are funded for real
            if sandbox and spec["funds"] and wallet.status == Wallet.Status.ACTIVE and not available.postings.exists():
                sandbox_mint(wallet, int(spec["funds"] * 10_000_000))
        deposits_sync()
        self._airtm_link(next(user for user, spec in users if spec["email"] == DEMO_BUYER))

    def _airtm_link(self, buyer: User) -> None:
        """The sandbox Airtm has an account for the demo buyer: linked, "Add funds with Airtm" is one click away."""
        if "airtm" not in settings.SANDBOX_PROVIDERS or buyer.airtm_user_id:
            return
        try:
            user_airtm_link(user=buyer, email=buyer.email, actor=Actor(type="SYSTEM", id="seed_demo"))
        except ServiceError as error:
            self.stderr.write(f"The demo buyer's Airtm account was not linked ({error.message}).")

    def _listings(self) -> None:
        """The demo categories with their pictures, the sellers' profiles, and the demo listings (with
        their pictures) unless one of that title ever existed among the demo sellers' listings."""
        categories = {}
        for position, (slug, name, icon) in enumerate(DEMO_CATEGORIES):
            category, _ = Category.objects.get_or_create(
                slug=slug, defaults={"name": name, "icon": icon, "position": position}
            )
            if not category.image:
                category.image.save(f"{slug}.jpg", ContentFile(category_picture(category=slug)), save=True)
            categories[slug] = category
        sellers = {email: self._seller_profile(email, *profile) for email, profile in DEMO_SELLERS.items()}
        existing = {
            listing.title: listing
            for listing in Listing.objects.filter(seller__in=sellers.values()).prefetch_related("images")
        }
        created = 0
        for number, spec in enumerate(DEMO_LISTINGS):
            pictures = [
                listing_picture(category=spec["category"], caption=spec["caption"], variant=variant, seed=number)
                for variant in range(spec["images"])
            ]
            listing = existing.get(spec["title"])
            if listing is not None:
                if not listing.images.all():  # seeded before demo listings had pictures
                    self._pictures_add(listing, pictures)
                continue
            listing_create(
                seller=sellers[spec["seller"]],
                title=spec["title"],
                description=spec["description"],
                price=Decimal(spec["price"]),
                category=categories[spec["category"]],
                delivery_days=spec["delivery_days"],
                delivery_terms=spec.get("delivery_terms", ""),
                milestones=[MilestoneSpec(title=t, amount=Decimal(a)) for t, a in spec.get("milestones", [])],
                images=[
                    SimpleUploadedFile(f"{n + 1}.jpg", picture, content_type="image/jpeg")
                    for n, picture in enumerate(pictures)
                ],
            )
            created += 1
        self.stdout.write(self.style.SUCCESS(f"Demo listings ready ({created} created)."))

    def _seller_profile(self, email: str, category: str, about: str) -> User:
        """The demo seller's "about" and generated avatar, unless they already have their own."""
        seller = User.objects.get(email__iexact=email)
        if not seller.about:
            seller.about = about
            seller.save(update_fields=["about"])
        if not seller.avatar:
            picture = avatar_picture(initials=initials(seller.display_name), category=category)
            seller.avatar.save("avatar.jpg", ContentFile(picture), save=True)
        return seller

    def _pictures_add(self, listing: Listing, pictures: list[bytes]) -> None:
        for position, picture in enumerate(pictures):
            image = ListingImage(listing=listing, position=position)
            image.image.save(f"{position + 1}.jpg", ContentFile(picture), save=False)
            image.save()
