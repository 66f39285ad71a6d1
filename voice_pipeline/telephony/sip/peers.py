"""Which peers the SIP agent answers: loopback always, plus the addresses and networks the operator lists."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def bound_to_loopback(host: str) -> bool:
    """Whether an agent bound to `host` is reachable from this machine only ("" and 0.0.0.0 are every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class PeerFilter:
    """An allow-list of peer networks; loopback peers (this machine) are always allowed.

    Empty (the default) means loopback only, wherever the agent is bound: a request from anyone
    else is answered 403 Forbidden and counted, so binding beyond loopback exposes nothing until
    the PBX or trunk addresses are listed (`0.0.0.0/0` allows every IPv4 peer, knowingly).
    """

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> PeerFilter:
        """From `telephony.sip_allowed_peers`: comma-separated IPs or CIDRs; ValueError names a bad entry."""
        networks = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"telephony.sip_allowed_peers: not an IP address or network: {entry!r}") from None
        return cls(tuple(networks))

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback or any(address in network for network in self.networks)
