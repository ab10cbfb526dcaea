"""Hooks shipped with the lab (and an example of how a team writes its own)."""
from __future__ import annotations

from lab.playbooks.hooks import HookContext, HookResult, hook

MAX_HOPS = 6


@hook("dns-trace")
def dns_trace(ctx: HookContext, domain: str, root: str, type: str = "SOA") -> HookResult:
    """Walk the delegation of ``domain`` from the root server ``root`` without recursion,
    like ``dig +trace``: follow each referral's glue until a server answers.

    Facts: ``hops``, ``server`` (the last server asked), ``status`` of its answer,
    ``authoritative`` (it answered with the AA flag), ``lame`` (a referral led to a
    server that neither answers authoritatively nor refers further), ``path``.
    """
    server, path, lines = root, [root], []
    result: dict = {}
    for _ in range(MAX_HOPS):
        result = ctx.probe("dns", server=server, name=domain, type=type, recurse=False)
        lines.append(f"@{server}: {result.get('status')} aa={result.get('aa')} "
                     f"answers={result.get('answers')!r} ns={result.get('ns')!r} "
                     f"glue={result.get('glue')!r}")
        if result.get("aa") or result.get("count") or not result.get("glue"):
            break
        nxt = result["glue"].split()[0]
        if nxt in path:
            break  # a referral loop back to a server already asked
        server = nxt
        path.append(server)
    authoritative = bool(result.get("aa"))
    lame = len(path) > 1 and not authoritative
    return HookResult(facts={"hops": len(path), "server": server,
                             "status": result.get("status", "error"),
                             "authoritative": authoritative, "lame": lame,
                             "path": " ".join(path)},
                      output="\n".join(lines), rc=0 if authoritative else 1)
