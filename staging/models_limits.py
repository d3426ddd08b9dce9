"""Per-account limits an operator sets in the admin: request rates and how much work one user
may have in flight. A row names either a role (a group: the default for everyone holding it) or
one user (which overrides its roles' rows field by field). Blank fields inherit: a user's blank
field takes the most generous of its roles' rows, then of the role defaults in the settings
(``ACCOUNT_LIMITS``), then the site default there."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

rate_validator = RegexValidator(
    r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$",
    "A rate such as 1200/minute: a count, a slash, and second, minute, hour or day.",
)


class AccountLimits(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="staging_limits",
        help_text="The user these limits are for (or give a role).",
    )
    role = models.OneToOneField(
        Group,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="staging_limits",
        help_text="The role (group) these limits are the default for (or give a user).",
    )
    request_rate = models.CharField(
        max_length=32,
        blank=True,
        validators=[rate_validator],
        help_text="Every API request, e.g. 1200/minute. Blank: inherit.",
    )
    submit_rate = models.CharField(
        max_length=32,
        blank=True,
        validators=[rate_validator],
        help_text="Requests that create jobs, e.g. 120/minute. Blank: inherit.",
    )
    max_active_jobs = models.PositiveIntegerField(
        null=True, blank=True, help_text="Jobs not yet ended at once. Blank: inherit."
    )
    max_active_files = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Files in jobs not yet ended. Blank: inherit."
    )
    max_active_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bytes in jobs not yet ended. Blank: inherit."
    )
    max_concurrent_scans = models.PositiveIntegerField(
        null=True, blank=True, help_text="Scan jobs not yet ended at once. Blank: inherit."
    )
    max_active_subjobs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Sub-jobs of this account's jobs handed to workers at once; the rest wait in "
        "the database (staging.services.dispatch). Blank: inherit.",
    )
    dispatch_weight = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Share of the workers against other accounts with work of the same priority: "
        "an account of weight 2 gets twice the sub-jobs of one of weight 1. Blank: inherit "
        "(1 when nothing sets it).",
    )

    class Meta:
        verbose_name = "account limits"
        verbose_name_plural = "account limits"
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=True) ^ Q(role__isnull=True),
                name="account_limits_user_xor_role",
                violation_error_message="Give either a user or a role, not both.",
            )
        ]

    def __str__(self) -> str:
        return f"limits of {self.user or f'role {self.role}'}"
