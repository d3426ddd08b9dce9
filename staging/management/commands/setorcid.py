from django.core.management.base import BaseCommand, CommandError

from staging.errors import ServiceError
from staging.services.accounts import user_orcid_set


class Command(BaseCommand):
    help = (
        "Give USERNAME an ORCID iD (the DTS maps it to the username through "
        "/dts/localuser/{orcid}), or take it away with --clear. An ORCID belongs to one user."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("orcid", nargs="?", help="e.g. 0000-0002-1825-0097")
        parser.add_argument("--clear", action="store_true", help="Remove the user's ORCID.")

    def handle(self, *args, username, orcid, clear, **options):
        if clear == bool(orcid):
            raise CommandError("give either an ORCID or --clear")
        try:
            profile = user_orcid_set(username=username, orcid=None if clear else orcid)
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"user {username}: ORCID {profile.orcid or 'none'}")
