import gc

from sqlvec.session.per_database import PerDatabase


class Server:
    """Stands for a Database: any weakly referenceable object."""


def test_one_value_per_server_and_database_name_dropped_with_the_server():
    made = []
    registry = PerDatabase(lambda: made.append(object()) or made[-1])
    a, b = Server(), Server()
    assert registry.of(a, "postgres") is registry.of(a, "postgres")
    assert registry.of(a, "other") is not registry.of(a, "postgres")
    assert registry.of(b, "postgres") is not registry.of(a, "postgres")
    assert len(made) == 3
    del a
    gc.collect()
    assert len(registry._by_server) == 1
