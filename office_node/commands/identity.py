"""`blo` subcommands for identities and the signed directory.

    blo init --office TH-MUK --country TH --name "Mukdahan BLO" [--role centre]
    blo keys show | blo keys rotate | blo keys passwd
    blo directory enroll REQUEST [--region R]... [--counterpart O]... [--nats URL]
    blo directory revoke KEY_ID --reason TEXT [--at MS] [--nats URL]
    blo directory list [--all]
    blo directory publish --nats URL      (a centre: put its whole verified copy in the bucket)
    blo directory sync --nats URL         (any node: fetch the bucket into the local copy)

Publishing: ``enroll`` and ``revoke`` always update the centre's local copy and publish
to the bucket when ``--nats`` is given; without it the operator runs ``blo directory
publish`` later (e.g. from the machine that can reach the bus). Republishing is
idempotent, so doing both is harmless.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import nacl.utils

from bus import (
    FAST_KDF,
    BoxKeyPair,
    Directory,
    DirectoryRecord,
    Identity,
    SigningKeyPair,
    centre_self_record,
    enrol_office,
    is_feed_name,
    is_office_id,
    make_request,
    read_request,
    revoke_key,
    save_identity,
    write_private_file,
)
from bus.errors import ConfigError, DirectoryError, KeyStoreError, NotConnected, ValidationError
from bus.transport import DirectoryCache
from office_node.cli import cli
from office_node.config import NodeConfig, render_config
from office_node.home import NEW_PASSPHRASE_ENV, NodeHome, load_home_identity, passphrase
from office_node.times import iso_utc, readable_times

DAY_MS = 86_400_000
T = TypeVar("T")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _home(ctx: click.Context) -> NodeHome:
    return NodeHome(ctx.obj["home"])


def _prompt(text: str) -> str:
    return click.prompt(text.rstrip(": "), hide_input=True, default="", show_default=False)


def _when(ms: int | None) -> str:
    return iso_utc(ms)


# -- init ----------------------------------------------------------------------------------


@cli.command("init")
@click.option("--office", required=True, help="This node's id, e.g. TH-MUK or TH-TCCC.")
@click.option("--country", required=True, help="Two-letter country code: the first two letters of the id.")
@click.option("--name", required=True, help='Display name, e.g. "Mukdahan BLO".')
@click.option("--role", type=click.Choice(["office", "centre"]), default="office", show_default=True)
@click.option("--insecure-no-passphrase", is_flag=True, help="Store the private keys unprotected (demos, tests).")
@click.option("--trust", multiple=True, metavar="CENTRE=PUBLICKEY", help="Pin a centre's signing key (repeatable).")
@click.option("--nats", "nats_urls", multiple=True, metavar="URL", help="NATS server URL for node.toml (repeatable).")
@click.option("--valid-days", default=5 * 365, show_default=True, help="A centre's own record: how long it is valid.")
@click.pass_context
def init(
    ctx: click.Context,
    office: str,
    country: str,
    name: str,
    role: str,
    insecure_no_passphrase: bool,
    trust: tuple[str, ...],
    nats_urls: tuple[str, ...],
    valid_days: int,
) -> None:
    """Create this node's keys, node.toml and an enrolment request for the centre."""
    if not is_office_id(office):
        raise ValidationError("--office", "must look like TH-MUK: two capital letters, a hyphen, 2-12 letters/digits")
    if country != office[:2]:
        raise ValidationError("--country", f"{country!r} must be the first two letters of {office}")
    home = _home(ctx)
    if home.identity_path.exists():
        raise KeyStoreError(
            f"{home.identity_path} already exists: this home has an identity. Refusing to overwrite it; "
            "use `blo keys rotate` for new keys or another --home"
        )
    anchors = _parse_trust(trust)
    secret = None if insecure_no_passphrase else passphrase(_prompt, confirm=True)
    now = _now_ms()
    identity = Identity.generate(office, nacl.utils.random)
    home.create_layout()
    save_identity(home.identity_path, identity, secret)
    request = make_request(identity, name=name, country=country, role=role, now_ms=now)
    write_private_file(home.request_path, request)
    if role == "centre":
        anchors[office] = identity.signing.public.hex()
    if not home.config_path.exists():
        write_private_file(
            home.config_path, render_config(office, role, anchors=anchors, urls=list(nats_urls)).encode()
        )
    else:
        click.echo(f"kept the existing {home.config_path}")
    config = home.config()
    if role == "centre":
        directory, cache = home.open_directory(config)
        directory.apply(
            centre_self_record(identity, name=name, now_ms=now, valid_until=now + valid_days * DAY_MS), witnessed_at=now
        )
        cache.save(directory)
    click.echo(f"created {office} ({role}) in {home.root}")
    click.echo(f"  signing key     {identity.signing.kid.hex()}  public {identity.signing.public.hex()}")
    click.echo(f"  encryption key  {identity.box.kid.hex()}")
    click.echo(
        f"  private keys    {'UNPROTECTED' if secret is None else 'passphrase-protected'} in {home.identity_path}"
    )
    if role == "centre":
        click.echo(f'  pin this centre on every node:  [trust.anchors] "{office}" = "{identity.signing.public.hex()}"')
        click.echo("  its self-signed record is in the local directory; publish it with `blo directory publish`")
    else:
        click.echo(f"  give {home.request_path} to the {country} centre (blo directory enroll)")


def _parse_trust(pins: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pin in pins:
        centre, sep, key = pin.partition("=")
        key = key.strip().lower()
        if not sep or not is_office_id(centre) or len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValidationError("--trust", f"{pin!r}: expected CENTRE=PUBLICKEY, e.g. TH-TCCC=<64 hex digits>")
        out[centre] = key
    return out


# -- keys ----------------------------------------------------------------------------------


@cli.group("keys")
def keys() -> None:
    """This node's own keys."""


@keys.command("show")
@click.pass_context
def keys_show(ctx: click.Context) -> None:
    """Print this node's key ids and public keys."""
    identity, secret = load_home_identity(_home(ctx), _prompt)
    click.echo(f"{identity.office_id}")
    click.echo(f"  signing key     {identity.signing.kid.hex()}  public {identity.signing.public.hex()}")
    click.echo(f"  encryption key  {identity.box.kid.hex()}  public {identity.box.public.hex()}")
    for old in identity.old_box:
        click.echo(f"  retired encryption key {old.kid.hex()} (kept to open older bulletins)")
    click.echo(f"  protection      {'none' if secret is None else 'passphrase'}")


@keys.command("rotate")
@click.pass_context
def keys_rotate(ctx: click.Context) -> None:
    """New signing and encryption keys; the old encryption key is kept. Writes a new
    enrolment request, endorsed by the old signing key, for the centre."""
    home = _home(ctx)
    config = home.config()
    if config.role == "centre":
        raise ConfigError(
            "a centre's signing key is the federation's trust anchor: rotating it means re-pinning it on every "
            "node and re-enrolling its offices, which `blo keys rotate` does not do"
        )
    old, secret = load_home_identity(home, _prompt)
    name = _current_name(home, config, old)
    rng = nacl.utils.random
    new = Identity(
        office_id=old.office_id,
        signing=SigningKeyPair.generate(rng),
        box=BoxKeyPair.generate(rng),
        old_box=(old.box, *old.old_box),
    )
    now = _now_ms()
    request = make_request(new, name=name, country=old.office_id[:2], role="office", now_ms=now, previous=old.signing)
    save_identity(home.identity_path, new, secret, overwrite=True)
    write_private_file(home.request_path, request)
    click.echo(
        f"rotated {new.office_id}: signing key {old.signing.kid.hex()} -> {new.signing.kid.hex()}, "
        f"encryption key {old.box.kid.hex()} -> {new.box.kid.hex()} (old one kept)"
    )
    click.echo(
        f"  give {home.request_path} to the centre; until it enrols the new key, bulletins signed with it "
        "wait in the receivers' quarantine"
    )
    # The running node read its keys when it started and keeps them: the key file changed
    # under it, so it must start again to sign with the new key.
    click.echo(
        "  a node running from this home still signs with the old key: restart it (stop `blo node run`, start it "
        "again) once the centre has enrolled the new key"
    )


@keys.command("passwd")
@click.pass_context
def keys_passwd(ctx: click.Context) -> None:
    """Re-encrypt this node's key file under a new passphrase, at the default cost.

    Asks for the current passphrase (or BLO_PASSPHRASE) and a new one twice (or
    BLO_NEW_PASSPHRASE). The way to give a key file a longer passphrase, to bring one
    written below the argon2id cost floor up to the default, and to protect an
    unprotected (demo) key file. The keys themselves do not change."""
    home = _home(ctx)
    # The one reader that opens a file below the cost floor: to re-encrypt it.
    identity, old = load_home_identity(home, _prompt, min_kdf=FAST_KDF)
    new = passphrase(_prompt, confirm=True, env=NEW_PASSPHRASE_ENV)
    save_identity(home.identity_path, identity, new, overwrite=True)
    was = "unprotected" if old is None else "protected"
    click.echo(f"re-encrypted {home.identity_path} ({was} before) under the new passphrase, at the default cost")


def _current_name(home: NodeHome, config: NodeConfig, identity: Identity) -> str:
    try:
        return read_request(home.request_path.read_bytes()).name
    except (OSError, DirectoryError):
        pass
    directory, _ = home.open_directory(config)
    record = directory.record(identity.office_id)
    if record is None:
        raise KeyStoreError(f"{home.request_path} is missing and the directory has no record of {identity.office_id}")
    return record.name


# -- directory -----------------------------------------------------------------------------


@cli.group("directory")
def directory_group() -> None:
    """The signed directory of offices and centres."""


def _centre(ctx: click.Context) -> tuple[NodeHome, NodeConfig, Identity, Directory, Any]:
    home = _home(ctx)
    config = home.config()
    if config.role != "centre":
        raise ConfigError(f"{config.source}: node.role is {config.role}; only a centre enrols and revokes")
    identity, _ = load_home_identity(home, _prompt)
    directory, cache = home.open_directory(config)
    if not directory.is_pinned(identity.office_id, identity.signing.public):
        raise ConfigError(f"{config.source}: this centre's own signing key is not in [trust.anchors]")
    return home, config, identity, directory, cache


@directory_group.command("enroll")
@click.argument("request_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--region", "regions", multiple=True, help="A region (feed) name (repeatable).")
@click.option("--counterpart", "counterparts", multiple=True, help="A counterpart office id (repeatable).")
@click.option("--valid-days", default=2 * 365, show_default=True)
@click.option("--nats", "nats_url", metavar="URL", help="Also publish the record to this NATS server.")
@click.pass_context
def enroll(
    ctx: click.Context,
    request_file: Path,
    regions: tuple[str, ...],
    counterparts: tuple[str, ...],
    valid_days: int,
    nats_url: str | None,
) -> None:
    """Sign a directory record for an office of this centre's country."""
    _, _, centre, directory, cache = _centre(ctx)
    request = read_request(request_file.read_bytes())
    for region in regions:
        if not is_feed_name(region):
            raise ValidationError("--region", f"{region!r}: lowercase letters, digits and hyphens")
    for office in counterparts:
        if not is_office_id(office):
            raise ValidationError("--counterpart", f"{office!r} is not an office id such as LA-SVK")
    current = directory.record(request.office_id)
    if request.previous_sign_kid is not None:
        if current is None or current.sign_kid != request.previous_sign_kid:
            raise DirectoryError(
                f"this rotation request is endorsed by key {request.previous_sign_kid.hex()}, which is not the current "
                f"key of {request.office_id} in this directory; check with the office",
                "bad_request",
            )
    if current is not None and not regions:
        regions = current.regions
    if current is not None and not counterparts:
        counterparts = current.counterparts
    now = _now_ms()
    data = enrol_office(
        request,
        centre,
        sequence=directory.next_sequence(request.office_id),
        now_ms=now,
        valid_until=now + valid_days * DAY_MS,
        regions=tuple(regions),
        counterparts=tuple(counterparts),
    )
    directory.apply(data, witnessed_at=now)
    cache.save(directory)
    record = directory.record(request.office_id)
    assert record is not None
    click.echo(
        f"enrolled {record.office_id} ({record.name}) signing key {record.sign_kid.hex()} "
        f"encryption key {record.box_kid.hex()}, sequence {record.sequence}, valid until {_when(record.valid_until)}"
    )
    if current is not None and current.sign_kid != record.sign_kid:
        click.echo(f"  replaces key {current.sign_kid.hex()} from {_when(record.valid_from)}")
    _maybe_publish(ctx, nats_url, [data])


@directory_group.command("revoke")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why, for the record (e.g. 'laptop stolen').")
@click.option("--at", "at_ms", type=int, help="Revoked from this time (ms since epoch); default now.")
@click.option("--nats", "nats_url", metavar="URL", help="Also publish the revocation to this NATS server.")
@click.pass_context
def revoke(ctx: click.Context, key_id: str, reason: str, at_ms: int | None, nats_url: str | None) -> None:
    """Revoke an office's key (its signing or encryption key id, in hex)."""
    _, _, centre, directory, cache = _centre(ctx)
    try:
        kid = bytes.fromhex(key_id)
    except ValueError:
        kid = b""
    if len(kid) != 8:
        raise ValidationError("KEY_ID", "expected a key id: 16 hex digits, as `blo directory list` shows them")
    record = directory.find_key(kid)
    if record is None:
        raise DirectoryError(f"no record in this directory holds key {key_id}", "unknown_key")
    now = _now_ms()
    data = revoke_key(centre, record.office_id, kid, revoked_at=now if at_ms is None else at_ms, reason=reason)
    if directory.apply(data, witnessed_at=now) is None:
        click.echo(
            f"key {key_id} of {record.office_id} was already revoked at {_when(directory.revoked_at(record.office_id, kid))}"
        )
    else:
        cache.save(directory)
        click.echo(
            f"revoked key {key_id} of {record.office_id} from {_when(directory.revoked_at(record.office_id, kid))}"
        )
    _maybe_publish(ctx, nats_url, [data])


@directory_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also older keys and revocations.")
@click.pass_context
def list_directory(ctx: click.Context, show_all: bool) -> None:
    """The verified local copy of the directory."""
    home = _home(ctx)
    directory, _ = home.open_directory()
    now = _now_ms()
    rows: list[DirectoryRecord] = []
    for record in directory.records():
        rows.extend(directory.history(record.office_id) if show_all else [record])
    if not rows:
        click.echo("the directory is empty (enrol offices, or `blo directory sync --nats URL`)")
        return
    click.echo(f"{'office':<10} {'role':<6} {'name':<28} {'signing key':<16} {'encryption key':<16} {'seq':>4}  status")
    for r in rows:
        keys = directory.sender_keys(r.office_id, r.sign_kid)
        problem = keys.problem_at(now) if keys is not None else "unknown"
        status = "valid" if problem is None else readable_times(problem.replace(f"the keys of {r.office_id} ", ""))
        click.echo(
            f"{r.office_id:<10} {r.role:<6} {r.name[:28]:<28} {r.sign_kid.hex():<16} {r.box_kid.hex():<16} "
            f"{r.sequence:>4}  {status}"
        )
    if show_all:
        for v in directory.revocations():
            click.echo(
                f"revocation: {v.office_id} key {v.kid.hex()} from {_when(v.revoked_at)} by {v.signer}: {v.reason}"
            )


@directory_group.command("export")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def export_bundle(ctx: click.Context, bundle: Path) -> None:
    """Write the verified local copy to a bundle file for another centre (DEPLOY.md step 2).

    The bundle holds signed public records and revocations only, no secret: it may go
    by USB stick or mail. The receiving centre verifies every item against its own
    pinned centres (`blo directory import`), so a bundle altered on the way is refused
    item by item."""
    directory, _ = _home(ctx).open_directory()
    DirectoryCache(bundle).save(directory)
    click.echo(f"wrote {bundle}: {len(directory.signed_items())} signed items ({len(directory)} offices)")


@directory_group.command("import")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_bundle(ctx: click.Context, bundle: Path) -> None:
    """Take another centre's bundle into the local copy, verifying every item against
    the pinned centres; items that do not verify are named and skipped."""
    home = _home(ctx)
    directory, cache = home.open_directory()
    added = refused = 0
    # Items from a file are witnessed now, by this node's clock (schemas/TRUST.md 2.1): the
    # witness times in the bundle are the other centre's, and a bundle must not be able to
    # date an item before a revocation this node holds.
    now = int(time.time() * 1000)
    for raw, _their_time in DirectoryCache(bundle).read_witnessed():
        try:
            change = directory.apply(raw, witnessed_at=now)
        except DirectoryError as exc:
            refused += 1
            click.echo(f"  refused an item ({exc.reason}): {readable_times(exc.message)}")
            continue
        added += change is not None
    cache.save(directory)
    click.echo(f"directory: {len(directory)} offices; {added} new items from {bundle.name}, {refused} refused")
    if refused:
        raise DirectoryError(f"{refused} item(s) of {bundle} did not verify: check the centres' pins in node.toml")


@directory_group.command("publish")
@click.option("--nats", "nats_url", required=True, metavar="URL")
@click.pass_context
def publish(ctx: click.Context, nats_url: str) -> None:
    """Put every item of the local verified copy in the NATS bucket (idempotent)."""
    directory, _ = _home(ctx).open_directory()
    _maybe_publish(ctx, nats_url, [s.raw for s in directory.signed_items()])


@directory_group.command("sync")
@click.option("--nats", "nats_url", required=True, metavar="URL")
@click.option("--timeout", default=10.0, show_default=True)
@click.pass_context
def sync(ctx: click.Context, nats_url: str, timeout: float) -> None:
    """Load the NATS bucket into the local copy once (verifying every item) and exit."""
    from bus.transport import DirectoryWatcher

    home = _home(ctx)
    config = home.config()
    directory, cache = home.open_directory(config)
    before = len(directory.signed_items())

    async def run(js: Any) -> None:
        watcher = DirectoryWatcher(js, directory, cache=cache)
        await watcher.start(timeout=timeout)
        await watcher.stop()

    _with_nats(ctx, nats_url, run, timeout)
    cache.save(directory)
    click.echo(f"directory: {len(directory)} offices, {len(directory.signed_items()) - before} new items")


def _maybe_publish(ctx: click.Context, nats_url: str | None, items: list[bytes]) -> None:
    if nats_url is None:
        click.echo("  not published: run `blo directory publish --nats URL` to send it to the bus")
        return
    from bus.transport import open_directory_bucket as open_bucket
    from bus.transport import publish_directory_item as publish_item

    async def run(js: Any) -> list[str]:
        kv = await open_bucket(js, create=True)
        return [await publish_item(kv, item) for item in items]

    keys = _with_nats(ctx, nats_url, run, 10.0)
    click.echo(f"  published {len(keys)} item(s) to {nats_url}")


def _signin(ctx: click.Context) -> tuple[dict[str, Any], str | None]:
    """How this home signs in to NATS (node.toml's [nats]: nkey seed or creds, TLS, inbox
    prefix) and its JetStream domain, so the directory commands work against secured hubs."""
    from bus.transport import ClientConfig

    home = _home(ctx)
    if not home.config_path.exists():
        return {}, None
    config = ClientConfig.from_settings(home.config().nats, urls=("nats://unused",))
    return config.signin_options(), config.jetstream_domain


def _with_nats(ctx: click.Context, url: str, work: Callable[[Any], Awaitable[T]], timeout: float) -> T:
    from bus.transport import one_shot_jetstream

    signin, domain = _signin(ctx)

    async def main() -> T:
        async with one_shot_jetstream(url, timeout=timeout, signin=signin, domain=domain) as js:
            try:
                return await asyncio.wait_for(work(js), timeout + 5)
            except TimeoutError:
                raise NotConnected(f"NATS at {url} did not answer within {timeout} s") from None

    return asyncio.run(main())
