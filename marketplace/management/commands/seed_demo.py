"""Idempotent demo data for `make run`: safe to run on every start, it never duplicates.

Needs the providers reachable (in embedded mode: the server running, since it serves
the sandbox); `make run` seeds once the server listens.
"""

from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from backoffice.roles import SUPPORT_AGENT, SUPPORT_LEAD
from marketplace.listings import MilestoneSpec, listing_create
from marketplace.models import Category, Listing, User
from marketplace.services import user_airtm_link
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
    {"email": "support@demo.offerhub.test", "display_name": "Sofia Support", "role": SUPPORT_AGENT, "funds": NO_FUNDS},
    {"email": "lead@demo.offerhub.test", "display_name": "Leo Lead", "role": SUPPORT_LEAD, "funds": NO_FUNDS},
]
ROLE_LABELS = {None: "buyer and seller", SUPPORT_AGENT: "support agent", SUPPORT_LEAD: "support lead"}

DEMO_BUYER = "buyer@demo.offerhub.test"
DEMO_SELLER = "seller@demo.offerhub.test"
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
        "category": "development",
        "price": "75.00",
        "delivery_days": 2,
        "description": "I read the module or pull request you point me at and send written notes: bugs, "
        "readability, tests worth adding. Django, FastAPI and data pipelines welcome.",
        "delivery_terms": "Notes as a Markdown file or as comments on your pull request.",
    },
    {
        "title": "Translate your website from English to Spanish",
        "category": "writing-translation",
        "price": "95.00",
        "delivery_days": 3,
        "description": "Natural, native Spanish for up to 2,000 words of web copy, adapted for Latin American "
        "readers. Glossary of your product terms included.",
    },
    {
        "title": "Proofread and edit up to 5,000 words",
        "category": "writing-translation",
        "price": "45.00",
        "delivery_days": 2,
        "description": "Spelling, grammar, clarity and consistency for your article, report or thesis chapter, "
        "with tracked changes so you keep the final say.",
    },
    {
        "title": "A 60-second explainer video",
        "category": "video-animation",
        "price": "320.00",
        "delivery_days": 10,
        "description": "A short animated video that explains what your product does: script, voice-over and "
        "motion graphics, in landscape and square formats for social media.",
        "milestones": [("Script and storyboard", "120.00"), ("Final video", "200.00")],
    },
    {
        "title": "SEO audit of your online shop",
        "category": "marketing",
        "price": "120.00",
        "delivery_days": 4,
        "description": "A prioritised list of what keeps your shop from ranking: page speed, titles, structured "
        "data, broken links, and the ten fixes worth doing first.",
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
        """The demo categories, and the demo seller's listings unless one of that title ever existed."""
        categories = {}
        for position, (slug, name, icon) in enumerate(DEMO_CATEGORIES):
            categories[slug], _ = Category.objects.get_or_create(
                slug=slug, defaults={"name": name, "icon": icon, "position": position}
            )
        seller = User.objects.get(email__iexact=DEMO_SELLER)
        existing = set(Listing.objects.filter(seller=seller).values_list("title", flat=True))
        created = 0
        for spec in DEMO_LISTINGS:
            if spec["title"] in existing:
                continue
            listing_create(
                seller=seller,
                title=spec["title"],
                description=spec["description"],
                price=Decimal(spec["price"]),
                category=categories[spec["category"]],
                delivery_days=spec["delivery_days"],
                delivery_terms=spec.get("delivery_terms", ""),
                milestones=[MilestoneSpec(title=t, amount=Decimal(a)) for t, a in spec.get("milestones", [])],
            )
            created += 1
        self.stdout.write(self.style.SUCCESS(f"Demo listings ready ({created} created)."))
