from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from staging.errors import ServiceError
from staging.roles import Role
from staging.services.accounts import token_create


class Command(BaseCommand):
    help = "Create USERNAME if needed, give it a role, and print a new bearer token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--role",
            required=True,
            # The values, not the enum members: argparse prints choices with repr().
            choices=sorted(role.value for role in Role),
            help="What the token may do (see docs/security.md).",
        )
        parser.add_argument(
            "--ttl-hours",
            type=int,
            default=None,
            help="Lifetime in hours; 0: never expires. Default: TOKEN_TTL_HOURS.",
        )
        parser.add_argument(
            "--orcid",
            default=None,
            help="The user's ORCID iD (e.g. 0000-0002-1825-0097), which the DTS maps to the "
            "username through /dts/localuser/{orcid}.",
        )

    def handle(self, *args, username, role, ttl_hours, orcid, **options):
        if ttl_hours is None:
            ttl = settings.REST_KNOX["TOKEN_TTL"]
        else:
            ttl = timedelta(hours=ttl_hours) if ttl_hours > 0 else None
        try:
            token = token_create(username=username, role=role, ttl=ttl, orcid=orcid)
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(token)
