"""Direct sync between devices on one network: discovery, TLS transport, sessions, transfers.

``discovery`` announces and finds devices with mDNS/DNS-SD using rotating per-share tokens;
``transport`` opens TLS 1.3 connections bound to device keys, says hello in the protocol's messages
and asks a connection-level ``authorize``; ``authorizer`` judges a device per share by the
membership chains; ``session`` is the sans-IO LAN session (chain heads first, version vectors,
envelopes, chunks) and ``link`` drives it over a connection; ``fetch`` asks several peers at once;
``bandwidth`` limits and counts bytes; ``transfer`` resumes chunk fetches across broken links.
Nothing here knows the sync engine: it injects chains, envelopes, chunks and chunk verification.
"""
