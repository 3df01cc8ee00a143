from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count
from django.utils.html import format_html

from marketplace.forms import AdminUserChangeForm, SignUpForm
from marketplace.listings import listing_pause
from marketplace.models import Category, Listing, ListingImage, ListingMilestone, Order, OrderMilestone, User
from offerhub.admin import ReadOnlyAdmin
from offerhub.money import money_format, money_from_stroops


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = AdminUserChangeForm
    add_form = SignUpForm
    ordering = ("-date_joined",)
    list_display = ("email", "display_name", "public_id", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "display_name", "public_id")
    readonly_fields = ("public_id", "date_joined", "last_login")
    fieldsets = (
        (None, {"fields": ("public_id", "email", "display_name", "password")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("date_joined", "last_login")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "display_name", "password1", "password2")}),)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "icon", "position", "listing_count")
    list_editable = ("position",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(listing_count=Count("listings"))

    @admin.display(description="listings", ordering="listing_count")
    def listing_count(self, obj):
        return obj.listing_count


class ListingImageInline(admin.TabularInline):
    model = ListingImage
    extra = 0
    can_delete = False
    fields = ("preview", "position", "width", "height", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="image")
    def preview(self, obj):
        return format_html('<a href="{0}"><img src="{0}" alt="" height="64"></a>', obj.image.url)


class ListingMilestoneInline(admin.TabularInline):
    model = ListingMilestone
    extra = 0
    can_delete = False
    fields = ("position", "title", "amount_usd")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="amount (USD)")
    def amount_usd(self, obj):
        return money_format(obj.amount)


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    """Sellers write listings; support reads them and can pause one (moderation), which is audited."""

    list_display = ("title", "public_id", "seller", "category", "price_usd", "status", "created_at")
    list_filter = ("status", "category")
    search_fields = ("title", "public_id", "seller__email", "seller__display_name", "seller__public_id")
    list_select_related = ("seller", "category")
    date_hierarchy = "created_at"
    inlines = [ListingMilestoneInline, ListingImageInline]
    actions = ["pause_selected"]
    fields = (
        "public_id",
        "seller",
        "category",
        "title",
        "description",
        "price_usd",
        "delivery_days",
        "delivery_terms",
        "status",
        "created_at",
        "updated_at",
        "deleted_at",
    )
    readonly_fields = ("public_id", "price_usd", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # every change goes through the listing services, which audit it

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="price (USD)", ordering="price_cents")
    def price_usd(self, obj):
        return money_format(obj.price)

    @admin.action(description="Pause the selected listings (hide them from buyers)")
    def pause_selected(self, request, queryset):
        paused = 0
        for listing in queryset.filter(status=Listing.Status.ACTIVE).order_by("pk"):
            listing_pause(listing=listing, actor=request.user)
            paused += 1
        self.message_user(request, f"Paused {paused} listing(s); their sellers can resume them.", messages.SUCCESS)


class OrderMilestoneInline(admin.TabularInline):
    model = OrderMilestone
    extra = 0
    can_delete = False
    fields = ("position", "ref", "title", "amount_usd", "status", "evidence_text", "evidence_link", "completed_at")
    readonly_fields = fields

    @admin.display(description="amount (USD)")
    def amount_usd(self, obj):
        return money_from_stroops(obj.amount)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    """Orders move only through their services (the state field is protected): support looks here,
    and acts through the order's dispute or the escrow's records."""

    list_display = ("public_id", "title", "buyer", "seller", "amount_usd", "status", "created_at")
    list_filter = ("status", "outcome")
    search_fields = ("public_id", "client_order_ref", "title", "buyer__email", "seller__email")
    list_select_related = ("buyer", "seller")
    date_hierarchy = "created_at"
    exclude = ("checkout_token",)
    inlines = [OrderMilestoneInline]

    @admin.display(description="amount (USD)", ordering="amount")
    def amount_usd(self, obj):
        return money_from_stroops(obj.amount)
