"""Direct sync between devices on one network: discovery, TLS transport, resumable transfers.

``discovery`` announces and finds devices with mDNS/DNS-SD using rotating per-share tokens;
``transport`` opens TLS 1.3 connections bound to device keys and gated by an authorization hook;
``transfer`` fetches content-addressed chunks across reconnects. Nothing here knows the sync
engine: it injects the discovery keys, the device certificate and the ``authorize`` decision.
"""
