"""Faults of STARTTLS and of the firewall's outbound SMTP proxy.

The certificate faults replace the mail server's certificate files in place (as an admin
who installed the wrong file would) and make the server read them again; nothing else
changes, so nothing names the fault. A mail server that stops offering STARTTLS still
gets mail from senders that use TLS opportunistically (the reference topology's mx-ext);
the tls-required scenario makes mx-ext require TLS for example.net (its
``smtp_tls_policy``), and then its mail to the company stays in its queue.
"""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, field_validator

from lab.errors import LabError
from lab.faults._support import (
    FW,
    MX,
    baseline_firewall,
    baseline_service,
    firewall_config,
    set_firewall,
)
from lab.faults.base import AnswerKey, Fault, LabContext, NoParams
from lab.model.firewall import DOMAIN
from lab.services.tlsca import cert_names


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _mta(lab: LabContext):
    return lab.service(MX, "smtp")


def _server_tls(lab: LabContext):
    tls = _mta(lab).tls
    if tls is None:
        raise LabError(f"{MX} has no TLS certificate in this lab")
    return tls


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_ISSUED: dict[int, tuple[bytes, bytes]] = {}  # the server's own files, by ServerTls object


def _replace(lab: LabContext, **reissue) -> None:
    """Give mx another certificate, keeping its own to put back on revert."""
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


class CertExpired(Fault):
    name = "tls-cert-expired"
    family = "tls"
    description = "mx's certificate expired (the file was replaced by an old one)"
    symptom = ("openssl s_client -starttls smtp -connect 10.1.0.25:25 -verify_return_error "
               "fails with 'certificate has expired'; swaks --tls-verify fails; mx-ext logs "
               "'Untrusted TLS connection established to mail.example.net'")

    class Params(_Params):
        days_ago: int = 3

    def answer(self, params) -> AnswerKey:
        return AnswerKey("tls-cert-expired", MX)

    async def apply(self, lab, params) -> None:
        tls = _server_tls(lab)
        if tls.certificate().not_valid_after.replace(tzinfo=dt.UTC) > _now():
            end = _now() - dt.timedelta(days=params.days_ago)
            _replace(lab, not_before=end - dt.timedelta(days=365), not_after=end)

    async def revert(self, lab, params) -> None:
        tls = _server_tls(lab)
        if tls.certificate().not_valid_after.replace(tzinfo=dt.UTC) <= _now():
            _put_back(lab)


class CertWrongName(Fault):
    name = "tls-cert-wrong-name"
    family = "tls"
    description = "mx's certificate is for another host name than mail.example.net"
    symptom = ("openssl s_client -starttls smtp -connect 10.1.0.25:25 -verify_return_error "
               "-verify_hostname mail.example.net fails with 'hostname mismatch'; the "
               "certificate's subject names another host")

    class Params(_Params):
        name: str = "www.example.org"

        @field_validator("name")
        @classmethod
        def _name(cls, v: str) -> str:
            if not DOMAIN.match(v):
                raise ValueError(f"{v!r} is not a host name")
            return v.lower()

    def answer(self, params) -> AnswerKey:
        return AnswerKey("tls-cert-wrong-name", MX)

    async def apply(self, lab, params) -> None:
        if cert_names(_server_tls(lab).certificate()) != [params.name]:
            _replace(lab, names=[params.name])

    async def revert(self, lab, params) -> None:
        if cert_names(_server_tls(lab).certificate()) == [params.name]:
            _put_back(lab)


class TlsNotOffered(Fault):
    name = "smtp-tls-not-offered"
    family = "tls"
    description = ("mx stopped offering STARTTLS (smtpd_tls_security_level none): senders "
                   "that require TLS can no longer deliver")
    symptom = ("EHLO to mx no longer lists STARTTLS (swaks --tls: 'STARTTLS not "
               "advertised'); a sender requiring TLS (mx-ext in the tls-required scenario) "
               "keeps its mail for example.net queued: 'TLS is required, but was not "
               "offered by host mail.example.net[203.0.113.25]'")
    Params = NoParams

    def answer(self, params) -> AnswerKey:
        return AnswerKey("smtp-tls-not-offered", MX)

    async def apply(self, lab, params) -> None:
        mta = _mta(lab)
        if mta.config.smtpd_tls_security_level != "none":
            mta.reconfigure(mta.config.model_copy(update={"smtpd_tls_security_level": "none"}))

    async def revert(self, lab, params) -> None:
        mta = _mta(lab)
        base = baseline_service(lab, MX, "smtp").smtpd_tls_security_level
        if mta.config.smtpd_tls_security_level != base:
            mta.reconfigure(mta.config.model_copy(update={"smtpd_tls_security_level": base}))


class OutboundSenderRefused(Fault):
    name = "proxy-outbound-sender-refused"
    family = "tls"
    description = ("the firewall's SMTP proxy relays outbound mail, but its allowed sender "
                   "domains do not include example.net")
    symptom = ("mail from the LAN to the internet bounces: mx's mail.log shows '554 5.7.1 "
               "<...@example.net>: Sender address rejected: Access denied' from the remote "
               "host; netguard -An shows X lines for mx's outbound sessions")

    class Params(_Params):
        senders: list[str] = ["example.org"]

    def answer(self, params) -> AnswerKey:
        return AnswerKey("proxy-outbound-sender-refused", FW)

    async def apply(self, lab, params) -> None:
        config = firewall_config(lab)
        proxy = config.proxy.model_copy(update={"outbound": True,
                                                "outbound_senders": params.senders})
        await set_firewall(lab, config.model_copy(update={"proxy": proxy}))

    async def revert(self, lab, params) -> None:
        config = firewall_config(lab)
        if config.proxy.outbound_senders != params.senders:
            return
        base = baseline_firewall(lab).proxy
        proxy = config.proxy.model_copy(update={"outbound": base.outbound,
                                                "outbound_senders": base.outbound_senders})
        await set_firewall(lab, config.model_copy(update={"proxy": proxy}))


FAULTS = [CertExpired(), CertWrongName(), TlsNotOffered(), OutboundSenderRefused()]
