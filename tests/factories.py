"""factory_boy factories for the staging domain."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from staging.models import File, Item, Job, JobStatus, Store, SubJob


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")

    @factory.post_generation
    def roles(user, create, extracted, **kwargs):
        for role in extracted or []:
            user.groups.add(Group.objects.get_or_create(name=role)[0])


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"store{n}")
    archive_root = "/nonexistent/archive"
    staging_root = "/nonexistent/staging"


def store_with_roots(directory: Path, *, slug: str, prefix: str = "", **fields) -> Store:
    """A store whose archive and staging roots are new empty directories in ``directory``
    (``<prefix>archive`` and ``<prefix>staging``)."""
    archive, staging = directory / f"{prefix}archive", directory / f"{prefix}staging"
    archive.mkdir()
    staging.mkdir()
    return Store.objects.create(
        slug=slug, archive_root=str(archive), staging_root=str(staging), **fields
    )


class FileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = File

    store = factory.SubFactory(StoreFactory)
    path = factory.Sequence(lambda n: f"dir/file{n}.dat")
    id = factory.LazyAttribute(lambda f: File.id_for(f.store.slug, f.path))
    size = 100
    mtime = factory.LazyFunction(lambda: datetime(2026, 1, 1, tzinfo=UTC))
    media_type = "application/octet-stream"
    last_seen_at = factory.LazyFunction(lambda: datetime(2026, 1, 1, tzinfo=UTC))


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    store = factory.SubFactory(StoreFactory)
    owner = factory.SubFactory(UserFactory)
    status = JobStatus.NOT_STARTED
    lifetime = timedelta(days=14)
    source = "api"


class SubJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SubJob

    job = factory.SubFactory(JobFactory)
    sequence = factory.Sequence(lambda n: n + 1)


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    job = factory.SubFactory(JobFactory)
    path = factory.Sequence(lambda n: f"dir/file{n}.dat")
    size = 100
