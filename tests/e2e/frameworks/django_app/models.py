"""Related models with a pgvector column and its HNSW index, as an application declares them."""

from django.db import models
from pgvector.django import HnswIndex, VectorField


class Shelf(models.Model):
    name = models.CharField(max_length=50, unique=True)

    class Meta:
        app_label = "library"


class Book(models.Model):
    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE, related_name="books")
    title = models.CharField(max_length=100)
    edition = models.IntegerField(default=1)
    pages = models.IntegerField()
    embedding = VectorField(dimensions=3)

    class Meta:
        app_label = "library"
        unique_together = [("shelf", "title", "edition")]
        constraints = [models.CheckConstraint(condition=models.Q(pages__gt=0),
                                              name="book_pages_positive")]
        indexes = [HnswIndex(name="book_embedding_hnsw", fields=["embedding"], m=16,
                             ef_construction=64, opclasses=["vector_l2_ops"])]
