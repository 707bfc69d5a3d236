"""`blo deploy` subcommands: NATS credentials and streams for a real deployment (DEPLOY.md).

    blo deploy nats-auth --out DIR --hub-url [CC=]URL... [--feed NAME=OFFICE,OFFICE[:post]]... [--leaf OFFICE]...
                         [--country CC]... [--hub-domain HUB] [--rotate OFFICE]...
    blo deploy streams --nats URL [--nats URL]... --nkey-seed DIR/seeds/admin.nk [--tls-ca CA]
                       [--replicas 3] [--leaf OFFICE]... [--buckets DIR/buckets.json [--bucket-mib 1024]]
    blo deploy leaf-streams [--nats nats://127.0.0.1:4222] [--office TH-MUK]

``nats-auth`` reads this node's verified signed directory (only records that chain to a
pinned centre and are valid now; revoked or expired offices get no user) and writes:

    DIR/blo-auth.conf            the hub servers' accounts block (public keys and permissions);
                                 the same file on every hub server of every country
    DIR/seeds/<OFFICE>.nk        each office's NATS user seed (0600): copy to that office only
    DIR/seeds/admin.nk, sys.nk   the operator's users: streams and buckets; server monitoring
    DIR/leaf/<OFFICE>-uplink.conf  for --leaf offices: the leaf node's uplink nkey (0600)
    DIR/nodes/<OFFICE>.toml      that office's whole node.toml: its hub URLs (--hub-url), seed,
                                 inbox prefix and this centre's pins; installed as is
    DIR/buckets.json             the attachment buckets these users are granted (one per office
                                 and per feed), for ``blo deploy streams --buckets``

Seeds already in DIR/seeds are kept (re-running after an enrolment adds users without
changing anyone's credentials); ``--rotate OFFICE`` makes a new one. Feed membership comes
from each feed's current signed epoch record in this node's verified local copy
(``data/feeds.json``): its owner and members read it, its owner and writers post to it,
as members judge posts. A feed whose record this node does not hold is given with
``--feed``: every office listed reads the feed, and ``:post`` also lets it post.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click
import nacl.utils

from bus import Directory, FeedKeyring, write_private_file
from bus.errors import ConfigError, NotConnected, ValidationError
from bus.transport import (
    DEFAULT_BUCKET_BYTES,
    STREAM_FEEDS,
    STREAM_OFFICES,
    BucketSpec,
    BusClient,
    ClientConfig,
    FeedKeyCache,
    FeedMembers,
    NodeAccess,
    StreamPlan,
    apply_plans,
    bucket_list_json,
    bucket_specs,
    check_office,
    hub_plans,
    hub_users,
    inbox_prefix,
    leaf_outbox_streams,
    new_user_seed,
    node_access,
    parse_bucket_list,
    parse_feed,
    public_key,
    read_seed,
)
from office_node.cli import cli
from office_node.config import render_config
from office_node.home import NodeHome
from office_node.times import iso_utc, readable_times


@cli.group("deploy")
def deploy_group() -> None:
    """NATS credentials and streams for a deployment on real NATS servers."""


def _seed(folder: Path, name: str, rotate: bool) -> str:
    """The public key of ``name``'s seed in ``folder``, generating the seed when missing."""
    path = folder / f"{name}.nk"
    if path.exists() and not rotate:
        return public_key(read_seed(path))
    seed = new_user_seed(nacl.utils.random)
    write_private_file(path, seed + b"\n")
    return public_key(seed)


def _feed_memberships(
    home: NodeHome, directory: Directory, nodes: list[tuple[str, str]], given: tuple[str, ...], gone: set[str]
) -> list[FeedMembers]:
    """Every feed's readers and posters: from its current signed record held in the node's
    verified local copy (offices that get no NATS user left out), then the ``--feed`` ones
    for feeds without a record here."""
    ring = FeedKeyring("", {}, directory)  # records only: no grant is for office ""
    FeedKeyCache(home.config().data_dir / "feeds.json").load_into(ring)
    users = {office for office, _ in nodes}
    out = []
    for name in ring.feeds():
        record = ring.record(name)
        assert record is not None
        signed = FeedMembers.of_record(record)
        out.append(
            FeedMembers(name, tuple(o for o in signed.readers if o in users), tuple(o for o in signed.posters if o in users))
        )
    for text in given:
        typed = parse_feed(text)
        if typed.feed in ring.feeds():
            raise ValidationError(
                "--feed", f"feed {typed.feed} has a signed epoch record: its members and writers come from it (drop --feed)"
            )
        out.append(_without(typed, gone))
    return out


def parse_hub_urls(given: tuple[str, ...]) -> dict[str, list[str]]:
    """``--hub-url [CC=]URL`` values -> country ("" for every country) -> URLs."""
    out: dict[str, list[str]] = {}
    for item in given:
        country, sep, url = item.partition("=")
        if not sep:
            country, url = "", item
        country = country.strip().upper()
        if country and not (len(country) == 2 and country.isalpha()):
            raise ValidationError("--hub-url", f"{item!r}: expected URL or CC=URL, e.g. TH=tls://th-hub-1.blo.example:4222")
        if "://" not in url:
            raise ValidationError("--hub-url", f"{item!r}: the URL needs its scheme (tls:// or nats://)")
        out.setdefault(country, []).append(url.strip())
    return out


def _node_toml(access: NodeAccess, hubs: dict[str, list[str]], anchors: dict[str, str], hub_domain: str) -> str:
    """The whole node.toml of one office under its generated NATS user."""
    if access.leaf:
        urls = ["nats://127.0.0.1:4222"]  # its own leaf node (deploy/nats/leaf-office.conf); no seed needed
        lines = [f'jetstream_domain = "{hub_domain}"']
    else:
        urls = hubs.get(access.office[:2]) or hubs.get("", [])
        lines = ['nkey_seed = "keys/nats.nk"   # seeds/<OFFICE>.nk from blo deploy nats-auth, 0600']
        if any(u.startswith("tls://") for u in urls):
            lines.append('tls_ca = "keys/nats-ca.pem"   # the network\'s CA')
    lines += [f'inbox_prefix = "{inbox_prefix(access.office)}"', "create_streams = false   # the operator creates them: blo deploy streams"]
    head = f"# {access.office}'s node.toml, from `blo deploy nats-auth`: install it as the node home's node.toml.\n"
    return head + render_config(access.office, access.role, anchors=anchors, urls=urls, nats_lines=lines)


@deploy_group.command("nats-auth")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--hub-url", "hub_urls", multiple=True, metavar="[CC=]URL",
    help="A hub server the nodes connect to (repeatable); CC= for one country's nodes only.",
)  # fmt: skip
@click.option("--feed", "feeds", multiple=True, metavar="NAME=OFFICE,OFFICE[:post]", help="A feed whose signed record this node does not hold, and its members.")
@click.option("--leaf", "leaves", multiple=True, metavar="OFFICE", help="An office that runs its own leaf node.")
@click.option("--country", "countries", multiple=True, metavar="CC", help="Only these countries' nodes (default all).")
@click.option(
    "--hub-domain", default="HUB", show_default=True, help="The hubs' JetStream domain (as leaf-connected nodes see it)."
)
@click.option("--rotate", "rotate", multiple=True, metavar="OFFICE", help="Make a new seed for this office (or admin).")
@click.pass_context
def nats_auth(
    ctx: click.Context,
    out: Path,
    hub_urls: tuple[str, ...],
    feeds: tuple[str, ...],
    leaves: tuple[str, ...],
    countries: tuple[str, ...],
    hub_domain: str,
    rotate: tuple[str, ...],
) -> None:
    """Per-office NATS users with least-privilege permissions, from the verified directory."""
    home = NodeHome(ctx.obj["home"])
    config = home.config()
    directory, _ = home.open_directory(config)
    hubs = parse_hub_urls(hub_urls)
    now = int(time.time() * 1000)
    nodes: list[tuple[str, str]] = []
    gone: set[str] = set()
    for record in directory.records():
        if countries and record.country not in countries:
            continue
        keys = directory.sender_keys(record.office_id, record.sign_kid)
        problem = keys.problem_at(now) if keys is not None else "no keys"
        if problem is not None:
            click.echo(f"  no NATS user for {record.office_id}: {readable_times(problem)}")
            gone.add(record.office_id)
            continue
        nodes.append((record.office_id, record.role))
    if not nodes:
        raise ConfigError("the verified directory holds no current office: enrol offices or `blo directory sync` first")
    memberships = _feed_memberships(home, directory, nodes, feeds, gone)
    accesses = node_access(nodes, memberships, leaf_offices=[o for o in leaves if _kept(o, gone, "--leaf")])
    missing = sorted({a.office[:2] for a in accesses if not a.leaf and not (hubs.get(a.office[:2]) or hubs.get(""))})
    if missing:
        raise ValidationError("--hub-url", f"name the hub servers of {', '.join(missing)}: --hub-url [CC=]tls://HOST:4222")
    for name in rotate:
        if name not in ("admin", "sys"):
            check_office(name)
    seeds = out / "seeds"
    for folder in (out, seeds):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    public = {a.office: _seed(seeds, a.office, a.office in rotate) for a in accesses}
    admin = _seed(seeds, "admin", "admin" in rotate)
    system = _seed(seeds, "sys", "sys" in rotate)
    auth = hub_users(accesses, public, admin_nkey=admin, system_nkey=system, hub_domain=hub_domain)
    header = (
        "BLO Bus NATS users, generated by `blo deploy nats-auth` from the verified signed directory\n"
        f"at {iso_utc(now)}: {len(accesses)} nodes, an admin and a system user.\n"
        "Do not edit: regenerate it (after every enrolment, revocation or feed change), copy it to\n"
        "every hub server of every country, and reload them (nats-server --signal reload).\n"
    )
    (out / "blo-auth.conf").write_text(auth.render(header=header), encoding="utf-8")
    nodes_dir = out / "nodes"
    nodes_dir.mkdir(exist_ok=True)
    for a in accesses:
        (nodes_dir / f"{a.office}.toml").write_text(
            _node_toml(a, hubs, config.trust_anchors, hub_domain), encoding="utf-8"
        )
        if a.leaf:
            seed = read_seed(seeds / f"{a.office}.nk").decode()
            write_private_file(out / "leaf" / f"{a.office}-uplink.conf", f'nkey: "{seed}"\n'.encode())
    feeds_named = [m.feed for m in memberships]
    (out / "buckets.json").write_text(bucket_list_json([a.office for a in accesses], feeds_named), encoding="utf-8")
    click.echo(f"wrote {out / 'blo-auth.conf'}: {len(accesses)} nodes + admin + sys")
    for a in accesses:
        extra = [f"reads {','.join(a.reads)}" if a.reads else "", f"posts {','.join(a.posts)}" if a.posts else ""]
        detail = "; ".join(x for x in (a.role, "leaf node" if a.leaf else "", *extra) if x)
        click.echo(f"  {a.office:<10} {public[a.office]}  {detail}")
    click.echo(f"  seeds in {seeds} (0600): give each office only its own; nodes/<OFFICE>.toml is its node.toml")
    click.echo(f"  {out / 'buckets.json'}: the attachment buckets to create (blo deploy streams --buckets)")


def _kept(office: str, gone: set[str], flag: str) -> bool:
    """False (with a warning) for an office the directory holds but no longer vouches for."""
    if office in gone:
        click.echo(f"  {flag}: skipped {office}: revoked or expired in the verified directory")
        return False
    return True


def _without(feed: FeedMembers, gone: set[str]) -> FeedMembers:
    """A feed's members without revoked or expired offices (each named in a warning): the
    same flags work again after a revocation. An office the directory never held is
    still an error (in ``node_access``): a typo must not silently grant nothing."""
    readers = tuple(o for o in feed.readers if _kept(o, gone, f"--feed {feed.feed}"))
    return FeedMembers(feed.feed, readers, tuple(o for o in feed.posters if o in readers))


def _client_config(urls: tuple[str, ...], nkey_seed: Path | None, tls_ca: Path | None) -> ClientConfig:
    return ClientConfig(urls=urls, nkey_seed=nkey_seed, tls_ca=tls_ca, name="blo-deploy", publish_timeout_s=10.0)


def _apply(config: ClientConfig, plans: list[StreamPlan], timeout: float, buckets: list[BucketSpec] | None = None) -> list[str]:
    async def main() -> list[str]:
        client = BusClient(config)
        await client.start()
        try:
            if not await client.wait_connected(timeout):
                raise NotConnected(f"cannot reach NATS at {', '.join(config.urls)}: {client.last_error or 'timed out'}")
            return await apply_plans(client, plans, buckets or ())
        finally:
            await client.close()

    return asyncio.run(main())


@deploy_group.command("streams")
@click.option("--nats", "urls", multiple=True, required=True, metavar="URL", help="A hub server (repeatable).")
@click.option("--nkey-seed", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The admin user's seed.")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The network's CA.")
@click.option("--replicas", default=3, show_default=True, type=click.IntRange(1, 5))
@click.option("--leaf", "leaves", multiple=True, metavar="OFFICE", help="Source this office's leaf outbox (repeatable).")
@click.option(
    "--buckets", "buckets_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
    help="The buckets.json of blo deploy nats-auth: create an attachment bucket for each office and feed it names.",
)  # fmt: skip
@click.option(
    "--bucket-mib", default=DEFAULT_BUCKET_BYTES // 2**20, show_default=True, type=click.IntRange(16, 1024 * 1024),
    help="Each attachment bucket's size limit (JetStream reserves it on every server holding a replica).",
)  # fmt: skip
@click.option("--timeout", default=10.0, show_default=True)
def streams(
    urls: tuple[str, ...],
    nkey_seed: Path | None,
    tls_ca: Path | None,
    replicas: int,
    leaves: tuple[str, ...],
    buckets_file: Path | None,
    bucket_mib: int,
    timeout: float,
) -> None:
    """Create (or update) the hub's streams and attachment buckets; run it against the hub
    that should hold them, again after every nats-auth (new offices and feeds get buckets)."""
    for office in leaves:
        check_office(office)
    plans = hub_plans(replicas=replicas, leaf_offices=leaves)
    buckets = None
    if buckets_file is not None:
        try:
            offices, feeds = parse_bucket_list(buckets_file.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise ValidationError("--buckets", f"{buckets_file}: {exc.problem}") from None
        # Attachments live as long as the bulletins that refer to them (ATTACHMENTS.md 5.1).
        max_age = max(p.spec.max_age_s for p in plans if p.spec.name in (STREAM_OFFICES, STREAM_FEEDS))
        buckets = bucket_specs(offices, feeds, max_age_s=max_age, replicas=replicas, max_bytes=bucket_mib * 2**20)
    done = _apply(_client_config(urls, nkey_seed, tls_ca), plans, timeout, buckets)
    for line in done:
        click.echo(line)
    if buckets is None:
        click.echo(
            "no attachment buckets (no --buckets): nodes that may not create streams cannot send files until the "
            "operator creates them; pass --buckets with the buckets.json of blo deploy nats-auth"
        )


@deploy_group.command("leaf-streams")
@click.option("--nats", "url", default="nats://127.0.0.1:4222", show_default=True, help="The office's own leaf node.")
@click.option("--office", help="The office whose leaf node this is (default: node.toml's office).")
@click.option("--timeout", default=10.0, show_default=True)
@click.pass_context
def leaf_streams(ctx: click.Context, url: str, office: str | None, timeout: float) -> None:
    """Create (or update) the outbox streams on an office's leaf node."""
    if office is None:
        office = NodeHome(ctx.obj["home"]).config().office
    try:
        specs = leaf_outbox_streams(office)
    except ValidationError as exc:
        raise ValidationError("--office", exc.problem) from None
    for line in _apply(_client_config((url,), None, None), [StreamPlan(s) for s in specs], timeout):
        click.echo(line)
