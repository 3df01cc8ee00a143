"""The backoffice's shared admin pieces (the models' admins live in their apps)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST

from backoffice.services import (
    airtm_discrepancies_open,
    drift_report_acknowledge,
    drift_report_resolve,
    reconciliation_open_counts,
    reconciliation_run,
)
from escrow.models import EscrowDriftReport
from offerhub.errors import ServiceError
from payments.models import AirtmDiscrepancy, ReconciliationReport

# The kinds of report support reconciles, as the pages' summary names them.
SUMMARY = {
    "wallets": (ReconciliationReport, "wallet drift reports"),
    "escrows": (EscrowDriftReport, "escrow drift reports"),
    "airtm": (AirtmDiscrepancy, "Airtm discrepancies"),
}


class DriftNoteForm(forms.Form):
    note = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="What you found and what you did (an adjustment, a contract fixed...). Required.",
    )
    decision = forms.ChoiceField(choices=[("acknowledge", "Acknowledge"), ("resolve", "Resolve")])


class DriftReportAdmin(admin.ModelAdmin):
    """A drift report (wallet or escrow): read-only fields, the discrepancy in plain words, and
    support's actions through the reconciliation services: "Run now" on the list, acknowledge or
    resolve with a note on the report. Nothing is edited in place."""

    class Media:
        css = {"all": ["css/admin.css"]}  # colours as classes: the CSP refuses style attributes

    run_target = ""  # "wallets", "escrows" or "airtm": what "Run now" compares
    shows_airtm_discrepancies = False  # the wallet reconciliation page lists the OPEN Airtm ones too
    change_form_template = "admin/payments/drift_report/change_form.html"
    change_list_template = "admin/payments/drift_report/change_list.html"
    list_filter = ("status",)
    ordering = ("-detected_at", "-pk")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_act_permission(self, request) -> bool:
        """Run, acknowledge and resolve: the change permission (Support lead)."""
        return self.has_change_permission(request)

    def discrepancies(self, obj) -> list[str]:
        raise NotImplementedError

    @admin.display(description="discrepancy")
    def discrepancy(self, obj):
        return " ".join(self.discrepancies(obj))

    def get_urls(self):
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}"
        return [
            path("run/", self.admin_site.admin_view(self.run_view), name=f"{name}_run"),
            path("<int:object_id>/note/", self.admin_site.admin_view(self.note_view), name=f"{name}_note"),
            *super().get_urls(),
        ]

    def _url(self, action: str, *args) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{action}", args=args)

    def changelist_view(self, request, extra_context=None):
        run = {"can_run": self.has_act_permission(request), "run_url": self._url("run"), "run_target": self.run_target}
        extra_context = {**(extra_context or {}), **run, **self._summary_context(request)}
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "POST":
            raise PermissionDenied  # every field is read-only; acknowledge and resolve post to note/
        obj = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            **self._note_context(request, obj, DriftNoteForm()),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _summary_context(self, request) -> dict:
        """Every kind of report still OPEN, counted and linked (those this user may read); on the
        wallet page, the OPEN Airtm discrepancies listed as well."""
        counts = reconciliation_open_counts()
        summary = []
        for target, (model, label) in SUMMARY.items():
            model_admin = self.admin_site._registry.get(model)
            if model_admin is None or not model_admin.has_view_permission(request):
                continue
            opts = model._meta
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist") + "?status__exact=OPEN"
            summary.append({"label": label, "open": counts[target], "url": url, "current": self.model is model})
        airtm_model = SUMMARY["airtm"][0]
        airtm_admin = self.admin_site._registry.get(airtm_model)
        show_airtm = self.shows_airtm_discrepancies and airtm_admin and airtm_admin.has_view_permission(request)
        discrepancies = None
        if show_airtm:
            name = f"admin:{airtm_model._meta.app_label}_{airtm_model._meta.model_name}_change"
            discrepancies = [{"row": row, "url": reverse(name, args=[row.pk])} for row in airtm_discrepancies_open()]
        return {"reconciliation_summary": summary, "airtm_discrepancies": discrepancies}

    def _note_context(self, request, obj, form) -> dict:
        open_report = obj is not None and obj.status == "OPEN"
        return {
            "discrepancies": self.discrepancies(obj) if obj is not None else [],
            "note_form": form if open_report and self.has_act_permission(request) else None,
            "note_url": self._url("note", obj.pk) if obj is not None else "",
        }

    @method_decorator(require_POST)
    def run_view(self, request):
        if not self.has_act_permission(request):
            raise PermissionDenied
        try:
            outcome = reconciliation_run(target=self.run_target, staff=request.user)
        except ServiceError as failure:
            self.message_user(request, f"Not run to the end: {failure.message}", messages.ERROR)
        else:
            level = messages.WARNING if outcome.drifting else messages.SUCCESS
            self.message_user(request, f"Ran the {self.run_target} comparison now: {outcome}.", level)
        return redirect(self._url("changelist"))

    def note_view(self, request, object_id):
        if not self.has_act_permission(request):
            raise PermissionDenied
        report = get_object_or_404(self.get_queryset(request), pk=object_id)
        change_url = self._url("change", report.pk)
        form = DriftNoteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            act = drift_report_resolve if form.cleaned_data["decision"] == "resolve" else drift_report_acknowledge
            try:
                report = act(report=report, note=form.cleaned_data["note"], staff=request.user)
            except ServiceError as refused:
                form.add_error("note" if refused.field == "note" else None, refused.message)
            else:
                done = "Resolved" if report.status == "RESOLVED" else "Acknowledged"
                self.message_user(request, f"{done}, with your note; the audit log records it.", messages.SUCCESS)
                return redirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            **self._note_context(request, report, form),
            "title": f"Acknowledge or resolve: {report}",
            "opts": self.model._meta,
            "original": report,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/payments/drift_report/note.html", context)
