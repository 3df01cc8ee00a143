import factory

from marketplace.models import Category, Listing, ListingMilestone, User

TEST_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"member{n}@example.test")
    display_name = factory.Sequence(lambda n: f"Member {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        password = kwargs.pop("password", TEST_PASSWORD)
        return model_class.objects.create_user(*args, password=password, **kwargs)


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")


class ListingFactory(factory.django.DjangoModelFactory):
    """A listing row as the services leave it (use listing_create to test the service itself)."""

    class Meta:
        model = Listing

    seller = factory.SubFactory(UserFactory)
    category = factory.SubFactory(CategoryFactory)
    title = factory.Sequence(lambda n: f"Service number {n}")
    description = "A careful piece of work, delivered on time."
    price_cents = 5_000
    delivery_days = 3


class ListingMilestoneFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ListingMilestone

    listing = factory.SubFactory(ListingFactory)
    title = factory.Sequence(lambda n: f"Milestone {n}")
    amount_cents = 2_500
