from django.apps import AppConfig


class LibraryConfig(AppConfig):
    name = "tests.e2e.frameworks.django_app"
    label = "library"
    default_auto_field = "django.db.models.BigAutoField"
