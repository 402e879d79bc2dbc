import pytest

from zoobench.errors import UsageError, ZoobenchError
from zoobench.registry import Registry


def test_lazy_target_is_loaded_on_first_use_only():
    registry: Registry = Registry("thing")
    registry.add("path_join", "os.path:join")
    import os.path

    assert registry.get("path_join") is os.path.join
    assert registry.origin("path_join") == "zoobench"


def test_duplicate_names_are_an_error_naming_both_origins():
    registry: Registry = Registry("method")
    registry.add("ensemble", object(), origin="zoobench")
    with pytest.raises(ZoobenchError, match="registered twice: by zoobench and by my-plugin"):
        registry.add("ensemble", object(), origin="my-plugin")


def test_a_miss_suggests_close_names_and_lists_all():
    registry: Registry = Registry("method")
    for name in ["ensemble", "prune", "rebasin"]:
        registry.add(name, object())
    with pytest.raises(UsageError, match="unknown method 'rebasn'; did you mean 'rebasin'\\? valid: ensemble, prune, rebasin"):
        registry.get("rebasn")


def test_a_broken_target_is_a_one_line_error():
    registry: Registry = Registry("architecture")
    registry.add("vit", "zoobench.no_such_module:build")
    with pytest.raises(ZoobenchError, match="architecture 'vit' could not be loaded from zoobench.no_such_module:build"):
        registry.get("vit")
