"""What in a state dict is not the bilinear network: activation chains and side groups.

Rules, not spellings:

* **Activations are visible in the keys.** ``nn.Sequential`` numbers its children, and only
  children with parameters have keys: ``net.0.weight``, ``net.2.weight``, ``net.4.weight``
  (indices with gaps) mean a parameter-free layer, an activation, between the linear ones.
  Such a chain is not bilinear.
* **A network inside a larger file.** A state dict may hold one complete network beside other
  things: a decomposition's rank factors (``_components.*`` beside ``target_model.*``), a
  ReLU encoder beside a bilinear decoder. Top-level groups that are private (their name
  starts with ``_``) or activation chains are set aside, and the rest is read as the
  network; ``info`` names what was set aside.
"""

from __future__ import annotations

import re

from bilin_cli.core.printable import printable

_INDEXED = re.compile(r"^(.*?)\.(\d+)\.(weight|bias)$")


def activation_chains(names) -> list[tuple[str, list[int]]]:
    """``(prefix, indices)`` of every ``nn.Sequential``-style chain whose parametrised
    children skip indices (``net.0``, ``net.2``): a parameter-free layer sits in each gap."""
    found: dict[str, set[int]] = {}
    for name in names:
        m = _INDEXED.match(name)
        if m and m.group(3) == "weight":
            found.setdefault(m.group(1), set()).add(int(m.group(2)))
    chains = []
    for prefix, idx in sorted(found.items()):
        ordered = sorted(idx)
        if len(ordered) >= 2 and any(b - a > 1 for a, b in zip(ordered, ordered[1:],
                                                              strict=False)):
            chains.append((prefix, ordered))
    return chains


def chain_text(prefix: str, indices: list[int]) -> str:
    return " → ".join(printable(f"{prefix}.{i}") for i in indices)


def side_groups(names) -> list[str]:
    """Top-level groups to set aside before reading the network: private ones (``_x.*``)
    and those whose matrices form an activation chain, when something else remains."""
    tops: dict[str, list[str]] = {}
    for name in names:
        tops.setdefault(name.split(".", 1)[0] if "." in name else "", []).append(name)
    aside = [t for t in tops if t.startswith("_") and t]
    for prefix, _ in activation_chains(names):
        top = prefix.split(".", 1)[0]
        if top and top not in aside and len(tops) > 1:
            # the whole top-level group is that chain (and its biases)
            if all(_INDEXED.match(n) and _INDEXED.match(n).group(1) == prefix
                   for n in tops[top]):
                aside.append(top)
    rest = [t for t in tops if t not in aside]
    return aside if rest else []
