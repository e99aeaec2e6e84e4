"""A user's own model: ``path/to/file.py:factory`` or ``pkg.module:factory`` (source
``user``), or an ``nn.Module`` handed to ``convert_model`` in Python (source ``module``).

The factory is called with no arguments (or ``num_classes=N`` when it takes one and a
fine-tuned head asks for it); preprocessing comes from the caller, ImageNet's by default.
Every way this can go wrong is one ``UserModelError`` line (exit 2 on the command line).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from zoo.entry import ModelEntry, Preprocessing, PublishedMeta, imagenet_preprocessing, safe_name
from zoo.exits import UserCodeExit

if TYPE_CHECKING:
    import torch

    from zoo.entry import WeightsSource

LICENSE = "the user's own"


class UserModelError(ValueError):
    """A model file or factory that cannot give a model (one line)."""


def is_user_target(text: str) -> bool:
    """``file.py:factory`` (a model file), as opposed to a catalog name."""
    return ".py:" in text or text.endswith(".py")


def split_target(target: str) -> tuple[str, str]:
    """(file path or module, factory name) of ``file.py:factory`` / ``pkg.mod:factory``."""
    where, sep, factory = target.rpartition(":")
    if not sep or not where or not factory.isidentifier():
        raise UserModelError(f"{target!r}: give the model as path/to/file.py:factory "
                             "(or --module pkg.module:factory), factory a function name")
    return where, factory


@lru_cache(maxsize=None)
def _import(where: str) -> Any:
    """The module (imported once per process: building the model again reuses it)."""
    if not where.endswith(".py"):
        try:
            return importlib.import_module(where)
        except ImportError as exc:
            raise UserModelError(f"module {where}: cannot import it ({exc})") from None
        except SystemExit as exc:
            raise _exited(f"module {where}", "importing it", exc) from None
        except Exception as exc:  # the user's module raised while importing
            raise UserModelError(f"module {where}: importing it raised "
                                 f"{type(exc).__name__}: {exc}") from None
    path = Path(where).resolve()
    if not path.is_file():
        raise UserModelError(f"model file {where} does not exist")
    module_name = f"modelzoo_user_{safe_name(path.stem).replace('-', '_').replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:  # the file may import its neighbours, as a script
        sys.path.insert(0, str(path.parent))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        sys.modules.pop(module_name, None)
        raise _exited(f"model file {where}", "importing it", exc) from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise UserModelError(f"model file {where}: importing it raised "
                             f"{type(exc).__name__}: {exc}") from None
    return module


def _exited(what: str, doing: str, exc: SystemExit) -> UserCodeExit:
    return UserCodeExit(f"{what}: {doing} called sys.exit({exc.code!r}) (code that runs as a "
                        "script belongs under `if __name__ == \"__main__\":`)")


def load_factory(target: str) -> Callable[..., Any]:
    where, name = split_target(target)
    module = _import(where)
    factory = getattr(module, name, None)
    if not callable(factory):
        found = sorted(n for n, v in vars(module).items()
                       if callable(v) and not n.startswith("_") and
                       getattr(v, "__module__", None) == module.__name__)
        raise UserModelError(f"{where} has no factory {name!r} (its functions and classes: "
                             f"{', '.join(found) or 'none'})")
    return factory


FACTORY_SEED = 0  # torch's RNG while a factory runs (``call_factory``)


def call_factory(target: str, kwargs: dict[str, Any]) -> "torch.nn.Module":
    """The factory's model. It runs with torch's RNG seeded (``FACTORY_SEED``, the global
    state restored after), so a factory that initialises randomly builds the same weights
    in every process: parity rebuilds the model the artifacts were converted from."""
    import torch

    factory = load_factory(target)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(FACTORY_SEED)
            model = factory(**kwargs)
    except SystemExit as exc:
        raise _exited(target, "calling it", exc) from None
    except Exception as exc:
        raise UserModelError(f"{target} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise UserModelError(f"{target} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def takes_num_classes(target: str) -> bool:
    params = inspect.signature(load_factory(target)).parameters.values()
    return any(p.name == "num_classes" or p.kind is p.VAR_KEYWORD for p in params)


def _head(model: "torch.nn.Module") -> tuple[str, int, int]:
    """(path, input width, classes) of the model's head; ("", 0, 0) when it has none."""
    from zoo.heads import find_head, head_width

    try:
        path, layer = find_head(model)
    except ValueError:
        return "", 0, 0
    return (path, *head_width(layer))


def checkpoint_classes(weights: str | None, head: str) -> int | None:
    """The class count a state-dict file's head holds (its ``<head>.weight`` rows)."""
    from zoo.weights import load_file_state, parse_spec

    kind, path = parse_spec(weights)
    if kind != "file" or not head:
        return None
    state, _ = load_file_state(path)
    weight = state.get(f"{head}.weight")
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 2 else None


def user_entry(target: str, *, preprocessing: Preprocessing | None = None,
               num_classes: int | None = None, weights: str | None = None,
               name: str | None = None) -> ModelEntry:
    """The entry of a user's factory. ``num_classes``: the head's classes when fine-tuned
    (default: what the checkpoint in ``weights`` holds, else what the factory builds)."""
    where, factory = split_target(target)
    builder = f"{Path(where).resolve()}:{factory}" if where.endswith(".py") else target
    asks = takes_num_classes(builder)
    model = call_factory(builder, {"num_classes": num_classes} if num_classes and asks else {})
    head, dim, built = _head(model)
    wanted = num_classes or checkpoint_classes(weights, head) or built
    kwargs = {"num_classes": wanted} if asks and (wanted != built or num_classes) else {}
    stem = Path(where).stem if where.endswith(".py") else where
    return ModelEntry(safe_name(name or f"{stem}-{factory}"), type(model).__name__, builder, "",
                      "", feature_layer=head, feature_dim=dim, license=LICENSE,
                      builder_kwargs=kwargs, num_classes=wanted or 0, source="user",
                      feature_at="input", preprocessing=preprocessing or imagenet_preprocessing())


def module_entry(model: "torch.nn.Module", *, name: str,
                 preprocessing: Preprocessing | None = None) -> ModelEntry:
    """The entry of an in-memory module (``convert_model(module, ...)``)."""
    head, dim, classes = _head(model)
    return ModelEntry(safe_name(name), type(model).__name__, f"<in-memory {type(model).__name__}>",
                      "", "", feature_layer=head, feature_dim=dim, license=LICENSE,
                      num_classes=classes, source="module", feature_at="input",
                      preprocessing=preprocessing or imagenet_preprocessing())


def fit_head(entry: ModelEntry, model: "torch.nn.Module") -> "torch.nn.Module":
    """Replace the head by a fresh one of ``entry.num_classes`` outputs when the factory
    built another width and cannot be asked for it (a fine-tuned head)."""
    import torch

    if not entry.feature_layer or not entry.num_classes:
        return model
    layer = model.get_submodule(entry.feature_layer)
    if isinstance(layer, torch.nn.Linear) and layer.out_features != entry.num_classes:
        parent, _, attr = entry.feature_layer.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr,
                torch.nn.Linear(layer.in_features, entry.num_classes, bias=layer.bias is not None))
    return model


def _meta(entry: ModelEntry, what: str) -> PublishedMeta:
    return PublishedMeta(weights=what, url="", acc1=math.nan, acc5=math.nan, num_params=0,
                         gflops=math.nan, file_size_mb=math.nan, recipe="",
                         preprocessing=entry.preprocessing or imagenet_preprocessing())


class UserSource:
    name = "user"

    def build(self, entry: ModelEntry) -> "torch.nn.Module":
        return fit_head(entry, call_factory(entry.builder, dict(entry.builder_kwargs)))

    def finish(self, entry: ModelEntry, model: "torch.nn.Module") -> "torch.nn.Module":
        return model

    def pretrained(self, entry: ModelEntry, tag: str | None
                   ) -> tuple["torch.nn.Module", "WeightsSource"]:
        from zoo.entry import WeightsSource

        label = (f"factory weights ({Path(entry.builder).name}, as the factory returns them, "
                 f"torch's RNG seeded {FACTORY_SEED})")
        return self.build(entry), WeightsSource("factory", label, "", False)

    def available_offline(self, entry: ModelEntry) -> bool:
        return True

    def published_meta(self, entry: ModelEntry, tag: str | None) -> PublishedMeta:
        return _meta(entry, "factory")


class ModuleSource(UserSource):
    name = "module"

    def build(self, entry: ModelEntry) -> "torch.nn.Module":
        raise UserModelError(f"{entry.name} was converted from an in-memory module, which "
                             "cannot be built again: pass it (run_parity(folder, model=module))")

    def available_offline(self, entry: ModelEntry) -> bool:
        return False

    def published_meta(self, entry: ModelEntry, tag: str | None) -> PublishedMeta:
        return _meta(entry, "in-memory module")


USER = UserSource()
MODULE = ModuleSource()
