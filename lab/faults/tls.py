"""Faults of STARTTLS on the mail server.

The certificate faults replace the mail server's certificate files in place (as an admin
who installed the wrong file would) and make the server read them again; nothing else
changes, so nothing names the fault. A mail server that stops offering STARTTLS still
gets mail from senders that use TLS opportunistically (the reference sender); the
tls-required scenario makes the sender require TLS for the mail domain (its
``smtp_tls_policy``), and then its mail to the company stays in its queue.

A repair is judged as a client would: from the internal client, ``openssl s_client
-starttls smtp`` to the mail server verifies the certificate for the mail host's name.
"""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, field_validator

from lab.errors import LabError
from lab.faults._checks import run_async
from lab.faults._support import baseline_service
from lab.faults.base import Cause, Fault, LabContext, NoParams, Repair
from lab.model.firewall import DOMAIN
from lab.protocols.tlsca import cert_names

# certificate names a wrong certificate may carry (RFC 2606 names, never the mail host)
WRONG_NAMES = ("www.shop.example", "mail.corp.example", "smtp.partners.example",
               "mx1.hosting.example")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _mail(lab: LabContext) -> str:
    return lab.roles.need("mail_server")


def _mta(lab: LabContext):
    return lab.service(_mail(lab), "smtp")


def _server_tls(lab: LabContext):
    tls = _mta(lab).tls
    if tls is None:
        raise LabError(f"{_mail(lab)} has no TLS certificate in this lab")
    return tls


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_ISSUED: dict[int, tuple[bytes, bytes]] = {}  # the server's own files, by ServerTls object


def _replace(lab: LabContext, **reissue) -> None:
    """Give the mail server another certificate, keeping its own to put back on revert."""
    tls = _server_tls(lab)
    _ISSUED.setdefault(id(tls), tls.issued())
    tls.reissue(**reissue)
    _mta(lab).reload_tls()


def _put_back(lab: LabContext) -> None:
    tls = _server_tls(lab)
    files = _ISSUED.pop(id(tls), None)
    if files is None:
        tls.reissue()
    else:
        tls.restore(files)
    _mta(lab).reload_tls()


async def starttls_verifies(lab: LabContext) -> Repair:
    """STARTTLS to the mail server from the internal client, the certificate verified
    against the lab's CA for the mail host's name."""
    roles = lab.roles
    client, server, name = (roles.need("internal_client"), roles.need("mail_private"),
                            roles.need("mail_server_host"))
    argv = ["timeout", "8", "openssl", "s_client", "-starttls", "smtp", "-connect",
            f"{server}:25", "-verify_return_error", "-verify_hostname", name, "-brief"]
    rc, out, err = await run_async(lab, client, argv, "QUIT\n")
    said = (err or out).strip().splitlines()
    first = next((ln for ln in said if "error" in ln.lower() or "didn't" in ln.lower()),
                 said[0] if said else f"exit {rc}")
    how = f"openssl s_client -starttls smtp from {client} to {server}:25 for {name}: "
    return Repair(rc == 0, how + ("verified" if rc == 0 else first))


class _TlsFault(Fault):
    family = "tls"
    where = "mail_server"

    async def check_repaired(self, lab, params) -> Repair:
        return await starttls_verifies(lab)


class CertExpired(_TlsFault):
    name = "tls-cert-expired"
    causes = (Cause("tls-cert-expired", "certificate expired",
                    "the mail server presents an expired TLS certificate", "server"),)
    description = ("${roles.mail_server}'s certificate expired ${params.days_ago} days ago "
                   "(the file was replaced by an old one)")
    symptom = ("openssl s_client -starttls smtp -connect ${roles.mail_private}:25 "
               "-verify_return_error fails with 'certificate has expired'; swaks --tls-verify "
               "fails; the servers sending to it log 'Untrusted TLS connection established "
               "to ...'")

    class Params(_Params):
        days_ago: int | None = None

    def drawn(self, rng, roles) -> dict:
        return {"days_ago": rng.randint(1, 40)}

    async def apply(self, lab, params) -> None:
        tls = _server_tls(lab)
        if tls.certificate().not_valid_after.replace(tzinfo=dt.UTC) > _now():
            end = _now() - dt.timedelta(days=params.days_ago or 3)
            _replace(lab, not_before=end - dt.timedelta(days=365), not_after=end)

    async def revert(self, lab, params) -> None:
        tls = _server_tls(lab)
        if tls.certificate().not_valid_after.replace(tzinfo=dt.UTC) <= _now():
            _put_back(lab)


class CertWrongName(_TlsFault):
    name = "tls-cert-wrong-name"
    causes = (Cause("tls-cert-wrong-name", "certificate for wrong name",
                    "the mail server's TLS certificate does not name the mail host", "server"),)
    description = ("${roles.mail_server}'s certificate is for ${params.name}, not "
                   "${roles.mail_server_host}")
    symptom = ("openssl s_client -starttls smtp -connect ${roles.mail_private}:25 "
               "-verify_return_error -verify_hostname ${roles.mail_server_host} fails with 'hostname "
               "mismatch'; the certificate's subject names ${params.name}")

    class Params(_Params):
        name: str | None = None

        @field_validator("name")
        @classmethod
        def _name(cls, v: str | None) -> str | None:
            if v is not None and not DOMAIN.match(v):
                raise ValueError(f"{v!r} is not a host name")
            return v.lower() if v else v

    def drawn(self, rng, roles) -> dict:
        names = [n for n in WRONG_NAMES if n != roles.mail_server_host]
        return {"name": rng.choice(names)}

    def validate(self, params, roles) -> None:
        if params.name == roles.mail_server_host:
            raise LabError(f"name must not be the mail server's {roles.mail_server_host}")

    async def apply(self, lab, params) -> None:
        if cert_names(_server_tls(lab).certificate()) != [params.name]:
            _replace(lab, names=[params.name])

    async def revert(self, lab, params) -> None:
        if cert_names(_server_tls(lab).certificate()) == [params.name]:
            _put_back(lab)


class TlsNotOffered(_TlsFault):
    name = "smtp-tls-not-offered"
    causes = (Cause("smtp-tls-not-offered", "STARTTLS not offered",
                    "the mail server no longer offers STARTTLS to senders that require it",
                    "server"),)
    description = ("${roles.mail_server} stopped offering STARTTLS (smtpd_tls_security_level "
                   "none): senders that require TLS can no longer deliver")
    symptom = ("EHLO to ${roles.mail_server} no longer lists STARTTLS (swaks --tls: 'STARTTLS "
               "not advertised'); a sender requiring TLS keeps its mail for "
               "${roles.mail_domain} queued: 'TLS is required, but was not offered by host "
               "${roles.mail_host}[${roles.inbound_public}]'")
    Params = NoParams

    async def apply(self, lab, params) -> None:
        mta = _mta(lab)
        if mta.config.smtpd_tls_security_level != "none":
            mta.reconfigure(mta.config.model_copy(update={"smtpd_tls_security_level": "none"}))

    async def revert(self, lab, params) -> None:
        mta = _mta(lab)
        base = baseline_service(lab, _mail(lab), "smtp").smtpd_tls_security_level
        if mta.config.smtpd_tls_security_level != base:
            mta.reconfigure(mta.config.model_copy(update={"smtpd_tls_security_level": base}))


FAULTS = [CertExpired(), CertWrongName(), TlsNotOffered()]
