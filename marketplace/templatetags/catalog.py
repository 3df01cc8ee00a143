"""`{% viewer_part "template" %}`: a part of a page that shows the visitor (marketplace.catalog_pages)."""

from django import template

from marketplace.catalog_pages import viewer_part_render

register = template.Library()


@register.simple_tag(takes_context=True)
def viewer_part(context, template_name: str):
    return viewer_part_render(context, template_name)
