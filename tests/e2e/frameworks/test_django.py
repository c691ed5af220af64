"""Django's ORM and migrations, unchanged, on sqlvec, with pgvector's Django integration.

`makemigrations` writes the app's first migration (into a temporary package) and `migrate`
applies it, with Django's own tables; the ORM then works across a ForeignKey (select_related,
ON DELETE CASCADE done by Django), orders by `L2Distance` over the HNSW-indexed column, and a
constraint violation is an IntegrityError naming the constraint, as on PostgreSQL.
"""

from __future__ import annotations

import io
import sys

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402


@pytest.fixture(scope="module")
def django_db(tmp_path_factory):
    """Django configured for a fresh sqlvec server, with the app's migrations generated into
    a temporary package and applied."""
    from tests.e2e.conftest import start_server

    if settings.configured:
        pytest.skip("Django is already configured in this process")
    running = start_server(tmp_path_factory.mktemp("django-server"))
    migrations = tmp_path_factory.mktemp("django-migrations")
    (migrations / "library_migrations").mkdir()
    (migrations / "library_migrations" / "__init__.py").write_text("")
    sys.path.insert(0, str(migrations))
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": "postgres", "USER": "postgres",
            "HOST": running.host, "PORT": running.port, "OPTIONS": {"sslmode": "disable"}}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                        "tests.e2e.frameworks.django_app.apps.LibraryConfig"],
        MIGRATION_MODULES={"library": "library_migrations"},
        USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.BigAutoField")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
        out = io.StringIO()
        call_command("makemigrations", "library", stdout=out)
        assert "Create model Shelf" in out.getvalue()
        call_command("migrate", verbosity=0)
        yield connection
    finally:
        from django.db import connections

        connections.close_all()
        sys.path.remove(str(migrations))
        assert running.stop() == 0, running.log()


def test_migrate_creates_tables_constraints_and_the_hnsw_index(django_db):
    from django.core.management import call_command

    with django_db.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations WHERE app = 'library'")
        assert cursor.fetchall() == [("library", "0001_initial")]
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'book_embedding_hnsw'")
        assert cursor.fetchall() == [  # vector_l2_ops is hnsw's default: not shown
            ("CREATE INDEX book_embedding_hnsw ON public.library_book USING hnsw "
             "(embedding) WITH (m='16', ef_construction='64')",)]
        cursor.execute("SELECT conname, contype FROM pg_constraint "
                       "WHERE conrelid = 'library_book'::regclass ORDER BY contype, conname")
        kinds = cursor.fetchall()
    assert ("book_pages_positive", "c") in kinds
    assert [k for _, k in kinds].count("f") == 1 and [k for _, k in kinds].count("u") == 1
    # Django's introspection sees what it created: nothing left to migrate.
    out = io.StringIO()
    call_command("makemigrations", "library", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_orm_queries_vector_ordering_and_cascade(django_db):
    from pgvector.django import L2Distance

    from tests.e2e.frameworks.django_app.models import Book, Shelf

    fiction = Shelf.objects.create(name="fiction")
    poetry = Shelf.objects.create(name="poetry")
    Book.objects.bulk_create([
        Book(shelf=fiction, title="Dune", pages=412, embedding=[1, 0, 0]),
        Book(shelf=fiction, title="Emma", pages=474, embedding=[0, 1, 0]),
        Book(shelf=poetry, title="Odes", pages=90, embedding=[0.9, 0.1, 0])])
    books = Book.objects.select_related("shelf").order_by(
        L2Distance("embedding", [1, 0, 0]))[:2]
    assert [(b.title, b.shelf.name) for b in books] == [("Dune", "fiction"), ("Odes", "poetry")]
    near = Book.objects.annotate(d=L2Distance("embedding", [0, 1, 0])).filter(
        shelf__name="fiction").order_by("d").values_list("title", flat=True)
    assert list(near) == ["Emma", "Dune"]
    stored = Book.objects.filter(shelf__name="poetry").values_list("embedding", flat=True)
    assert [float(x) for x in stored[0]] == pytest.approx([0.9, 0.1, 0])
    deleted, per_model = fiction.delete()
    assert (deleted, per_model) == (3, {"library.Book": 2, "library.Shelf": 1})
    assert list(Book.objects.values_list("title", flat=True)) == ["Odes"]
    poetry.delete()


@pytest.mark.parametrize("make, constraint", [
    (lambda Book, shelf: Book(shelf=shelf, title="Odes", pages=0, embedding=[0, 0, 1]),
     "book_pages_positive"),
    (lambda Book, shelf: Book(shelf=shelf, title="Same", pages=5, embedding=[0, 0, 1]),
     "library_book_shelf_id_title_edition_"),
    (lambda Book, shelf: Book(shelf_id=10**9, title="Lost", pages=5, embedding=[0, 0, 1]),
     "library_book_shelf_id_"),
    (lambda Book, shelf: type(shelf)(name=shelf.name), "library_shelf_name_key"),
])
def test_integrity_errors_name_the_constraint(django_db, make, constraint):
    from django.db import IntegrityError, transaction

    from tests.e2e.frameworks.django_app.models import Book, Shelf

    shelf = Shelf.objects.create(name=f"s-{constraint}")
    Book.objects.create(shelf=shelf, title="Same", pages=5, embedding=[0, 0, 1])
    try:
        with pytest.raises(IntegrityError) as caught:
            with transaction.atomic():
                make(Book, shelf).save()
        assert caught.value.__cause__.diag.constraint_name.startswith(constraint)
    finally:
        shelf.delete()
