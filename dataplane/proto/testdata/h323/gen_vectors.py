#!/usr/bin/env python3
"""Generate the H.323 / H.460.17 test vectors for portico-proto's `h225` sniffer.

The vectors are encoded by an ASN.1 toolchain independent of portico: pycrate's
compiled H.225.0 module (`pycrate_asn1dir.H225.H323_MESSAGES`, H.225.0 version 7) and
its aligned-PER codec. TPKT (RFC 1006) and Q.931 (H.225.0 clause 7) framing is built
here by hand, octet by octet. See README.md for what each vector is.

Modes:
    gen_vectors.py            write NAME.bin and vectors.tsv next to this script
    gen_vectors.py --check    regenerate into a temporary directory and compare with
                              the committed files; exit 1 on any difference
    gen_vectors.py --tshark   write a pcap of the committed vectors (one TCP segment to
                              port 1720 each) and check that Wireshark's decoder
                              (tshark) shows the manifest's message type, RAS message,
                              gatekeeperIdentifier and alias; exit 1 on any mismatch

Everything is deterministic: no clock, no randomness, no dictionary-order effects.
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = "vectors.tsv"

# H.225.0 version 7: { itu-t(0) recommendation(0) h(8) 2250 version(0) 7 }.
H225_PROTOCOL_ID = (0, 0, 8, 2250, 0, 7)
# H.460.17: GenericData id standard 17; its parameter 1 carries the RAS message.
H460_17 = 17
H460_17_RAS_PARAMETER = 1

# Q.931 message types (Q.931 Table 4-2).
Q931_SETUP = 0x05
Q931_FACILITY = 0x62


# ---------------------------------------------------------------------------
# ASN.1 (pycrate)


def asn1():
    from pycrate_asn1dir import H225

    patch_pycrate_sequence_extensions()
    return H225.H323_MESSAGES


def patch_pycrate_sequence_extensions():
    """Work around a pycrate 0.8.1 aligned-PER encoder bug.

    In `_CONSTRUCT._to_per` (SEQUENCE/SET) pycrate encodes the extension additions'
    open types *before* it writes the extension bitmap, while its bit-offset counter
    still stands at the end of the root components. When the root part does not end on
    an octet boundary, the open types get padding computed from the wrong offset and the
    bitmap's realignment is computed from an offset that includes them: the output has
    stray zero bits (pycrate's own decoder rejects it). X.691 §19.7-19.9 and §11.2: the
    root components, then the "normally small length" and the presence bitmap, then
    each present addition as an open type, whose length determinant is octet-aligned.

    The patch lets pycrate encode the root part alone (extension values held back, so
    its own code writes the extension bit, the optional-component bitmap and every root
    component), sets the extension bit, and then writes the preamble, the bitmap, the
    realignment and the open types in X.691 order, each addition still encoded by
    pycrate (`encode_unconst_open`). H.225.0 has no extension groups (`[[ ]]`); the
    patch refuses them rather than guess.
    """
    from pycrate_asn1rt import asnobj_construct
    from pycrate_asn1rt.codecs import ASN1CodecPER
    from pycrate_asn1rt.utils import T_UINT

    cls = asnobj_construct._CONSTRUCT
    if getattr(cls, "_portico_patched", False):
        return
    original = cls._to_per

    def to_per(self):
        if self._ext is None or not ASN1CodecPER.ALIGNED:
            return original(self)
        present = [k for k in self._ext_nest if not isinstance(k, list) and k in self._val]
        if any(isinstance(k, list) for k in self._ext_nest) or any(
                k[:5] == "_ext_" for k in self._val):
            raise SystemExit("extension groups / unknown extensions are not supported")
        if not present:
            return original(self)
        full = self._val
        self._val = {k: v for k, v in full.items() if k not in self._ext}
        try:
            gen = original(self)
        finally:
            self._val = full
        # The root-only encoding starts with the extension bit, written as 0.
        assert gen[0] == (T_UINT, 0, 1)
        gen[0] = (T_UINT, 1, 1)
        n = len(self._ext_nest)
        if n > 64:
            raise SystemExit("more than 64 extension additions")
        # X.691 §19.8: the bitmap length as a normally small length (n-1 in 6 bits).
        gen.append((T_UINT, n - 1, 7))
        bitmap = sum(1 << (n - 1 - self._ext_nest.index(k)) for k in present)
        gen.append((T_UINT, bitmap, n))
        ASN1CodecPER._off[-1] += 7 + n
        for ident in self._ext_nest:
            if ident in present:
                comp = self._cont[ident]
                parent, comp._parent, comp._val = comp._parent, self, full[ident]
                gen.extend(ASN1CodecPER.encode_unconst_open(comp))
                comp._parent = parent
        return gen

    cls._to_per = to_per
    cls._portico_patched = True


def aper(obj, value):
    """Encode `value` with aligned PER and check that pycrate decodes it back to the
    same octets (pycrate 0.8.1 mis-pads an extension bitmap that directly follows an
    odd-length dialledDigits string; the round trip catches any such slip)."""
    obj.set_val(value)
    octets = obj.to_aper()
    obj.from_aper(octets)
    if obj.to_aper() != octets:
        raise SystemExit("pycrate round trip differs for %s" % obj._name)
    return octets


def ip4(a, b, c, d, port):
    return ("ipAddress", {"ip": bytes([a, b, c, d]), "port": port})


def terminal():
    return {"mc": False, "undefinedNode": False, "terminal": {}}


def innovaphone_vendor():
    # T.35 country code 4 (Germany) is what innovaphone devices send; the
    # manufacturer code is a placeholder.
    return {
        "vendor": {"t35CountryCode": 4, "t35Extension": 0, "manufacturerCode": 0x6A5},
        "productId": b"IP232",
        "versionId": b"13r3 sr10",
    }


def guid(n):
    return bytes(range(n, n + 16))


def ras_grq(gk=None, aliases=None, **extra):
    v = {
        "requestSeqNum": 1,
        "protocolIdentifier": H225_PROTOCOL_ID,
        "rasAddress": ip4(192, 168, 0, 10, 1719),
        "endpointType": terminal(),
    }
    if gk is not None:
        v["gatekeeperIdentifier"] = gk
    if aliases is not None:
        v["endpointAlias"] = aliases
    v.update(extra)
    return ("gatekeeperRequest", v)


def ras_rrq(gk=None, aliases=None, **extra):
    v = {
        "requestSeqNum": 2,
        "protocolIdentifier": H225_PROTOCOL_ID,
        "discoveryComplete": True,
        "callSignalAddress": [ip4(192, 168, 0, 10, 1720)],
        "rasAddress": [ip4(192, 168, 0, 10, 1719)],
        "terminalType": terminal(),
        "endpointVendor": innovaphone_vendor(),
    }
    if gk is not None:
        v["gatekeeperIdentifier"] = gk
    if aliases is not None:
        v["terminalAlias"] = aliases
    v.update(extra)
    return ("registrationRequest", v)


def generic_data(ident, parameters=None):
    g = {"id": ident}
    if parameters is not None:
        g["parameters"] = parameters
    return g


def h460_17(ras_octets):
    """H.460.17: the RasMessage as raw octets in parameter 1 of feature 17."""
    return generic_data(
        ("standard", H460_17),
        [{"id": ("standard", H460_17_RAS_PARAMETER), "content": ("raw", ras_octets)}],
    )


def user_information(body, generic=None, **extra):
    pdu = {"h323-message-body": body, "h245Tunnelling": False}
    if generic is not None:
        pdu["genericData"] = generic
    pdu.update(extra)
    return {"h323-uu-pdu": pdu}


def facility_uuie():
    return {
        "protocolIdentifier": H225_PROTOCOL_ID,
        "alternativeAliasAddress": [("h323-ID", "gk")],
        "conferenceID": guid(0x40),
        "reason": ("undefinedReason", 0),
        "callIdentifier": {"guid": guid(0x50)},
        "multipleCalls": False,
        "maintainConnection": True,
    }


def setup_uuie():
    return {
        "protocolIdentifier": H225_PROTOCOL_ID,
        "sourceAddress": [("h323-ID", "alice")],
        "sourceInfo": {"vendor": innovaphone_vendor(), "mc": False, "undefinedNode": False,
                       "terminal": {}},
        "destinationAddress": [("dialledDigits", "1001")],
        "activeMC": False,
        "conferenceID": guid(0x10),
        "conferenceGoal": ("create", 0),
        "callType": ("pointToPoint", 0),
        "callIdentifier": {"guid": guid(0x20)},
        "mediaWaitForConnect": False,
        "canOverlapSend": False,
        "multipleCalls": False,
        "maintainConnection": False,
    }


# ---------------------------------------------------------------------------
# Q.931 and TPKT, by hand


def q931(message_type, crv, ies):
    """Q.931 message (Q.931 §4, as H.225.0 clause 7 uses it): discriminator 0x08, the call
    reference (`crv` is its value octets: b"" for the zero-length form innovaphone
    sends on the H.460.17 RAS tunnel), message type, information elements."""
    assert len(crv) <= 15
    return bytes([0x08, len(crv)]) + crv + bytes([message_type]) + b"".join(ies)


def ie(identifier, content):
    """A variable-length information element (Q.931 4.5.1): identifier, 1-octet
    length, contents."""
    assert identifier < 0x80 and identifier != 0x7E and len(content) < 256
    return bytes([identifier, len(content)]) + content


def user_user(uu):
    """User-user IE (Q.931 §4.5.30, with the 2-octet length of H.225.0), discriminator 0x05
    ("X.208 and X.209 coded user information"), then the PER H323-UserInformation."""
    body = b"\x05" + uu
    return b"\x7e" + struct.pack(">H", len(body)) + body


def tpkt(payload):
    """RFC 1006 §6: version 3, reserved 0, length of the whole packet (header too)."""
    assert len(payload) + 4 <= 0xFFFF
    return bytes([3, 0]) + struct.pack(">H", len(payload) + 4) + payload


# ---------------------------------------------------------------------------
# The vectors


def gatekeeper_key(gk):
    """Mirror of the Rust `gatekeeper_key`: drop `physical-location@` (the last `@`
    before the first `/`), ASCII lower-case the rest."""
    head = gk.split("/", 1)[0]
    if "@" in head:
        gk = gk[head.rindex("@") + 1:]
    return "".join(c.lower() if c.isascii() else c for c in gk)


LONG_GK = "Building-7-Floor-3-Room-301@DVL-CKL2.NET/"
LONG_GK += "Registration-Location-" + "x" * (128 - len(LONG_GK) - len("Registration-Location-"))
assert len(LONG_GK) == 128

NON_ASCII_GK = "Büro-Ω@dvl-ckl2.net/東京-Zürich"
NON_ASCII_ALIAS = "Ärztin-Ωμέγα-電話"


def vectors():
    """(name, description, message_type, ras_kind, gatekeeper_id, alias, octets)."""
    M = asn1()
    out = []

    def add(name, description, message_type, ras_kind, gk, alias, octets):
        out.append((name, description, message_type, ras_kind, gk, alias, octets))

    def tunnelled(ras, crv=b"", body=("empty", 0), before=(), ies=(), **uu_extra):
        ras_octets = aper(M.RasMessage, ras)
        generic = list(before) + [h460_17(ras_octets)]
        uu = aper(M.H323_UserInformation, user_information(body, generic, **uu_extra))
        return tpkt(q931(Q931_FACILITY, crv, list(ies) + [user_user(uu)]))

    # -- GRQ --------------------------------------------------------------------
    add("grq_domain",
        "GRQ, gatekeeperIdentifier = domain only; aliases h323-ID then dialledDigits; "
        "one extension addition (supportsAssignedGK); zero-length call reference",
        Q931_FACILITY, "grq", "dvl-ckl2.net", "alice",
        tunnelled(ras_grq("dvl-ckl2.net",
                          [("h323-ID", "alice"), ("dialledDigits", "49301234")],
                          supportsAssignedGK=False)))

    add("grq_no_gkid",
        "GRQ without gatekeeperIdentifier (gatekeeper discovery); aliases "
        "dialledDigits (odd length, 4-bit characters) then h323-ID",
        Q931_FACILITY, "grq", None, "201",
        tunnelled(ras_grq(None, [("dialledDigits", "201"), ("h323-ID", "bob")],
                          supportsAltGK=0, supportsAssignedGK=True)))

    add("grq_loc_branch_crv2",
        "GRQ, gatekeeperIdentifier loc@dvl-ckl2.net/branch-b, 2-octet call reference 0; "
        "every root field present (nonStandardData, vendor, gateway protocols, "
        "callServices) and the first alias an extension alternative (url-ID)",
        Q931_FACILITY, "grq", "loc@dvl-ckl2.net/branch-b", "alice",
        tunnelled(ras_grq(
            "loc@dvl-ckl2.net/branch-b",
            [("url-ID", "h323:alice@dvl-ckl2.net"), ("email-ID", "alice@dvl-ckl2.net"),
             ("h323-ID", "alice"), ("dialledDigits", "49301234")],
            nonStandardData={
                "nonStandardIdentifier": ("h221NonStandard", {
                    "t35CountryCode": 4, "t35Extension": 0, "manufacturerCode": 0x6A5}),
                "data": b"\x01\x02\x03"},
            rasAddress=("ip6Address", {"ip": bytes(range(16)), "port": 1719}),
            endpointType={
                "nonStandardData": {"nonStandardIdentifier": ("object", (1, 3, 6, 1, 4, 1, 6666)),
                                    "data": b""},
                "vendor": innovaphone_vendor(),
                "gatekeeper": {},
                "gateway": {"protocol": [
                    ("voice", {"supportedPrefixes": [{"prefix": ("dialledDigits", "0")}]}),
                    ("h323", {"nonStandardData": {
                        "nonStandardIdentifier": ("object", (1, 2, 3)), "data": b"x"}}),
                ]},
                "mcu": {},
                "terminal": {},
                "mc": True,
                "undefinedNode": False,
                "set": (0x80000001, 32),
            },
            callServices={
                "q932Full": True, "q951Full": False, "q952Full": True, "q953Full": False,
                "q955Full": False, "q956Full": False, "q957Full": True,
                "q954Info": {"conferenceCalling": False, "threePartyService": True},
            },
            supportsAltGK=0,
            supportsAssignedGK=False,
        ), crv=b"\x00\x00"))

    # -- RRQ --------------------------------------------------------------------
    add("rrq_hq",
        "RRQ, gatekeeperIdentifier x@dvl-ckl2.net/hq; several extension additions "
        "(timeToLive, keepAlive, endpointIdentifier, genericData, ...)",
        Q931_FACILITY, "rrq", "x@dvl-ckl2.net/hq", "hq-phone-1",
        tunnelled(ras_rrq(
            "x@dvl-ckl2.net/hq", [("h323-ID", "hq-phone-1"), ("dialledDigits", "1001")],
            timeToLive=300, keepAlive=False, endpointIdentifier="ep-1",
            willSupplyUUIEs=False, maintainConnection=True,
            genericData=[generic_data(("standard", 18))],
            supportsAssignedGK=False)))

    add("rrq_loc_branch_crv2",
        "RRQ, gatekeeperIdentifier loc@dvl-ckl2.net/branch-b, 2-octet call reference 0, "
        "terminalAlias dialledDigits (odd length) first",
        Q931_FACILITY, "rrq", "loc@dvl-ckl2.net/branch-b", "20123",
        tunnelled(ras_rrq("loc@dvl-ckl2.net/branch-b",
                          [("dialledDigits", "20123"), ("h323-ID", "branch-phone")],
                          keepAlive=True),
                  crv=b"\x00\x00"))

    add("rrq_long_id",
        "RRQ, a 128-character gatekeeperIdentifier (SIZE upper bound) in mixed case",
        Q931_FACILITY, "rrq", LONG_GK, "long",
        tunnelled(ras_rrq(LONG_GK, [("h323-ID", "long")], keepAlive=False)))

    add("rrq_non_ascii",
        "RRQ, gatekeeperIdentifier and h323-ID alias with BMP characters beyond "
        "Latin-1 (Greek, CJK)",
        Q931_FACILITY, "rrq", NON_ASCII_GK, NON_ASCII_ALIAS,
        tunnelled(ras_rrq(NON_ASCII_GK, [("h323-ID", NON_ASCII_ALIAS)], keepAlive=False)))

    add("rrq_no_gkid",
        "RRQ without gatekeeperIdentifier; several transport address kinds; e164 alias "
        "with '#', '*' and ','",
        Q931_FACILITY, "rrq", None, "*31#,2",
        tunnelled(ras_rrq(
            None, [("dialledDigits", "*31#,2")],
            callSignalAddress=[
                ip4(192, 168, 0, 10, 1720),
                ("ipSourceRoute", {"ip": b"\x0a\x00\x00\x01", "port": 1720,
                                   "route": [b"\x0a\x00\x00\x02"], "routing": ("loose", 0)}),
                ("ipxAddress", {"node": b"\x00\x01\x02\x03\x04\x05",
                                "netnum": b"\x00\x00\x00\x01", "port": b"\x06\xb8"}),
                ("netBios", bytes(16)),
                ("nsap", b"\x49\x00\x01"),
            ],
            keepAlive=False)))

    add("rrq_alias_kinds",
        "RRQ, a one-character gatekeeperIdentifier; terminalAlias with partyNumber, "
        "transportID and mobileUIM (extension alternatives) before a 256-character "
        "h323-ID (SIZE upper bound)",
        Q931_FACILITY, "rrq", "D", "a" * 255 + "Z",
        tunnelled(ras_rrq(
            "D",
            [("partyNumber", ("e164Number", {
                "publicTypeOfNumber": ("internationalNumber", 0),
                "publicNumberDigits": "4930123456"})),
             ("transportID", ip4(10, 0, 0, 2, 1720)),
             ("mobileUIM", ("gsm-uim", {"imsi": "262011234567890"})),
             ("h323-ID", "a" * 255 + "Z"),
             ("dialledDigits", "1001")],
            keepAlive=False)))

    add("rrq_facility_body",
        "RRQ in a FACILITY whose body is a Facility-UUIE (not `empty`); H323-UU-PDU "
        "with nonStandardData, callLinkage, provisionalRespToH245Tunnelling and "
        "stimulusControl before genericData",
        Q931_FACILITY, "rrq", "dvl-ckl2.net/branch-b", "fac",
        tunnelled(ras_rrq("dvl-ckl2.net/branch-b", [("h323-ID", "fac")], keepAlive=False),
                  body=("facility", facility_uuie()),
                  nonStandardData={"nonStandardIdentifier": ("object", (1, 2, 840)),
                                   "data": b"nsd"},
                  callLinkage={"globalCallId": guid(0x70)},
                  provisionalRespToH245Tunnelling=0,
                  stimulusControl={"isText": 0}))

    add("rrq_other_features_first",
        "RRQ; genericData holds H.460.18, H.460.19 (oid id, nested and compound "
        "parameters) and a nonStandard feature before H.460.17; Q.931 bearer "
        "capability, display and sending-complete IEs before the User-user IE",
        Q931_FACILITY, "rrq", "dvl-ckl2.net", "alice",
        tunnelled(
            ras_rrq("dvl-ckl2.net", [("h323-ID", "alice")], keepAlive=False),
            before=[
                generic_data(("standard", 18)),
                generic_data(("oid", (0, 0, 8, 460, 19, 0, 1)), [
                    {"id": ("standard", 1)},
                    {"id": ("standard", 2), "content": ("text", "hello")},
                    {"id": ("standard", 3), "content": ("unicode", "Ωμ")},
                    {"id": ("standard", 4), "content": ("bool", True)},
                    {"id": ("standard", 5), "content": ("number8", 200)},
                    {"id": ("standard", 6), "content": ("number16", 60000)},
                    {"id": ("standard", 7), "content": ("number32", 4000000000)},
                    {"id": ("standard", 8), "content": ("id", ("standard", 20000))},
                    {"id": ("standard", 9), "content": ("alias", ("h323-ID", "not-this"))},
                    {"id": ("standard", 10), "content": ("transport", ip4(10, 0, 0, 1, 1))},
                    {"id": ("standard", 11), "content": ("compound", [
                        {"id": ("standard", 1), "content": ("raw", b"\x00")},
                        {"id": ("standard", 2), "content": ("nested", [
                            generic_data(("standard", 17), [
                                {"id": ("standard", 1), "content": ("raw", b"decoy")}]),
                        ])},
                    ])},
                ]),
                generic_data(("nonStandard", guid(0x60)),
                             [{"id": ("standard", 1), "content": ("raw", b"decoy")}]),
            ],
            ies=[ie(0x04, b"\x88\x90\xa5"), ie(0x28, b"Alice"), b"\xa1"]))

    # -- gatekeeperIdentifier as an extension addition ----------------------------
    add("urq_gkid_ext",
        "URQ; gatekeeperIdentifier is an extension addition (after alternateEndpoints)",
        Q931_FACILITY, "urq", "dvl-ckl2.net/branch-b", None,
        tunnelled(("unregistrationRequest", {
            "requestSeqNum": 3,
            "callSignalAddress": [ip4(192, 168, 0, 10, 1720)],
            "endpointAlias": [("h323-ID", "alice")],
            "endpointIdentifier": "ep-1",
            "gatekeeperIdentifier": "dvl-ckl2.net/branch-b",
            "reason": ("ttlExpired", 0),
        })))

    add("arq_gkid_ext",
        "ARQ; gatekeeperIdentifier is an extension addition after canMapAlias and "
        "callIdentifier",
        Q931_FACILITY, "arq", "x@dvl-ckl2.net/hq", None,
        tunnelled(("admissionRequest", {
            "requestSeqNum": 4,
            "callType": ("pointToPoint", 0),
            "callModel": ("gatekeeperRouted", 0),
            "endpointIdentifier": "ep-1",
            "destinationInfo": [("dialledDigits", "1001")],
            "srcInfo": [("h323-ID", "alice")],
            "srcCallSignalAddress": ip4(192, 168, 0, 10, 1720),
            "bandWidth": 4000000000,
            "callReferenceValue": 7,
            "callServices": {
                "q932Full": False, "q951Full": False, "q952Full": False, "q953Full": False,
                "q955Full": False, "q956Full": False, "q957Full": False,
                "q954Info": {"conferenceCalling": False, "threePartyService": False},
            },
            "conferenceID": guid(0x30),
            "activeMC": False,
            "answerCall": False,
            "canMapAlias": True,
            "callIdentifier": {"guid": guid(0x31)},
            "gatekeeperIdentifier": "x@dvl-ckl2.net/hq",
            "willSupplyUUIEs": False,
        })))

    add("lrq_gkid_ext",
        "LRQ; gatekeeperIdentifier is an extension addition after sourceInfo and "
        "canMapAlias",
        Q931_FACILITY, "lrq", "dvl-ckl2.net", None,
        tunnelled(("locationRequest", {
            "requestSeqNum": 5,
            "destinationInfo": [("dialledDigits", "1001"), ("h323-ID", "bob")],
            "replyAddress": ip4(192, 168, 0, 10, 1719),
            "sourceInfo": [("h323-ID", "alice")],
            "canMapAlias": False,
            "gatekeeperIdentifier": "dvl-ckl2.net",
            "hopCount": 3,
        })))

    add("drq_gkid_ext",
        "DRQ; gatekeeperIdentifier is an extension addition after callIdentifier",
        Q931_FACILITY, "drq", "dvl-ckl2.net", None,
        tunnelled(("disengageRequest", {
            "requestSeqNum": 6,
            "endpointIdentifier": "ep-1",
            "conferenceID": guid(0x30),
            "callReferenceValue": 7,
            "disengageReason": ("normalDrop", 0),
            "callIdentifier": {"guid": guid(0x31)},
            "gatekeeperIdentifier": "dvl-ckl2.net",
            "answeredCall": False,
        })))

    add("brq_gkid_ext",
        "BRQ; gatekeeperIdentifier is an extension addition after callIdentifier",
        Q931_FACILITY, "brq", "Loc@DVL-ckl2.net", None,
        tunnelled(("bandwidthRequest", {
            "requestSeqNum": 7,
            "endpointIdentifier": "ep-1",
            "conferenceID": guid(0x30),
            "callReferenceValue": 7,
            "callType": ("pointToPoint", 0),
            "bandWidth": 640,
            "callIdentifier": {"guid": guid(0x31)},
            "gatekeeperIdentifier": "Loc@DVL-ckl2.net",
            "answeredCall": True,
        })))

    # -- no gatekeeper id -------------------------------------------------------------
    uu = aper(M.H323_UserInformation, user_information(("setup", setup_uuie())))
    add("setup_no_ras",
        "SETUP (a call, call reference 2 octets) with no tunnelled RAS: no "
        "gatekeeper id, to be refused by the caller",
        Q931_SETUP, None, None, None,
        tpkt(q931(Q931_SETUP, b"\x12\x34",
                  [ie(0x04, b"\x88\x90\xa5"), ie(0x6C, b"\x00\x81alice"),
                   ie(0x70, b"\x81" + b"1001"), user_user(uu)])))

    uu = aper(M.H323_UserInformation, user_information(("empty", 0)))
    add("facility_no_ras",
        "FACILITY with body `empty` and no genericData: no tunnelled RAS",
        Q931_FACILITY, None, None, None,
        tpkt(q931(Q931_FACILITY, b"", [user_user(uu)])))

    for v in out:
        for field in (v[0], v[1], v[4] or "", v[5] or ""):
            assert "\t" not in field and "\n" not in field
    return out


def manifest(vs):
    lines = ["# name\tmessage_type\tras\tgatekeeper_id\tkey\talias\tdescription"
             "  (empty field = none; written by gen_vectors.py)"]
    for name, description, message_type, ras_kind, gk, alias, _ in vs:
        key = gatekeeper_key(gk) if gk is not None else ""
        lines.append("\t".join([name, "0x%02x" % message_type, ras_kind or "", gk or "",
                                key, alias or "", description]))
    return "\n".join(lines) + "\n"


def write_all(directory):
    vs = vectors()
    names = set()
    for name, _, _, _, _, _, octets in vs:
        assert name not in names
        names.add(name)
        with open(os.path.join(directory, name + ".bin"), "wb") as f:
            f.write(octets)
    with open(os.path.join(directory, MANIFEST), "w", encoding="utf-8", newline="\n") as f:
        f.write(manifest(vs))
    return vs


def generated_files(directory):
    return sorted(f for f in os.listdir(directory) if f.endswith(".bin") or f == MANIFEST)


def check():
    with tempfile.TemporaryDirectory() as tmp:
        write_all(tmp)
        fresh, committed = generated_files(tmp), generated_files(HERE)
        bad = sorted(set(fresh) ^ set(committed))
        for f in sorted(set(fresh) & set(committed)):
            with open(os.path.join(tmp, f), "rb") as a, open(os.path.join(HERE, f), "rb") as b:
                if a.read() != b.read():
                    bad.append(f)
        if bad:
            print("gen_vectors --check: differs from the committed vectors: " + ", ".join(bad))
            return 1
    print("gen_vectors --check: %d files identical" % len(fresh))
    return 0


# ---------------------------------------------------------------------------
# Wireshark confirmation


def read_manifest(directory):
    rows = []
    with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, mt, ras, gk, key, alias, _ = line.rstrip("\n").split("\t")
            rows.append({"name": name, "message_type": int(mt, 16), "ras": ras or None,
                         "gk": gk or None, "key": key or None, "alias": alias or None})
    return rows


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(payload, sport):
    """Ethernet/IPv4/TCP frame carrying `payload` from 192.0.2.10:sport to
    198.51.100.1:1720 (documentation addresses; the frame is only ever in a file)."""
    src, dst = bytes([192, 0, 2, 10]), bytes([198, 51, 100, 1])
    tcp = struct.pack(">HHIIBBHHH", sport, 1720, 1, 1, 5 << 4, 0x18, 65535, 0, 0)
    pseudo = src + dst + struct.pack(">BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack(">H", checksum(pseudo + tcp + payload)) + tcp[18:]
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000, 64,
                     6, 0, src, dst)
    ip = ip[:10] + struct.pack(">H", checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + tcp + payload


def write_pcap(path, payloads):
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, payload in enumerate(payloads):
        f = frame(payload, 40000 + i)
        out.append(struct.pack("<IIII", 1700000000 + i, 0, len(f), len(f)) + f)
    with open(path, "wb") as fh:
        fh.write(b"".join(out))


RAS_NAMES = {"gatekeeperRequest": "grq", "registrationRequest": "rrq",
             "unregistrationRequest": "urq", "admissionRequest": "arq",
             "locationRequest": "lrq", "disengageRequest": "drq", "bandwidthRequest": "brq"}


def children(field, name):
    return [c for c in field if c.tag == "field" and c.get("name") == name]


def tshark_view(packet):
    """What Wireshark shows for one packet: Q.931 message type, the tunnelled RAS
    message, its gatekeeperIdentifier and the first h323-ID/dialledDigits alias of
    endpointAlias/terminalAlias, and any malformed/expert-error items."""
    view = {"message_type": None, "ras": None, "gk": None, "alias": None, "errors": []}
    for f in packet.iter():
        if f.tag not in ("field", "proto"):
            continue
        name = f.get("name")
        if name == "q931.message_type" and view["message_type"] is None:
            view["message_type"] = int(f.get("value"), 16)
        elif name == "_ws.malformed" or (name == "_ws.expert" and any(
                c.get("name") == "_ws.expert.severity" and c.get("show") in ("8388608", "Error")
                for c in f.iter("field"))):
            view["errors"].append(f.get("showname"))
        elif name == "h225.RasMessage" and view["ras"] is None:
            message = [c for c in f if c.tag == "field"]
            if not message:
                continue
            message = message[0]
            kind = message.get("name", "").replace("h225.", "").replace("_element", "")
            view["ras"] = RAS_NAMES.get(kind, kind)
            gks = children(message, "h225.gatekeeperIdentifier")
            if gks:
                view["gk"] = gks[0].get("show")
            for list_name in ("h225.endpointAlias", "h225.terminalAlias"):
                for lst in children(message, list_name):
                    for g in lst.iter("field"):
                        if g.get("name") in ("h225.h323_ID", "h225.dialledDigits"):
                            view["alias"] = g.get("show")
                            break
                    if view["alias"] is not None:
                        break
    return view


def short(value):
    if value is None:
        return "-"
    if len(value) <= 40:
        return value
    return "%s...(%d characters)" % (value[:24], len(value))


def tshark_version():
    out = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


def run_tshark():
    if shutil.which("tshark") is None:
        print("gen_vectors --tshark: tshark not found (apt-get install tshark)")
        return 1
    rows = read_manifest(HERE)
    payloads = []
    for row in rows:
        with open(os.path.join(HERE, row["name"] + ".bin"), "rb") as f:
            payloads.append(f.read())
    with tempfile.TemporaryDirectory() as tmp:
        pcap = os.path.join(tmp, "h323_vectors.pcap")
        write_pcap(pcap, payloads)
        # Wireshark dissects TCP port 1720 as TPKT + Q.931 + H.225.0 by default (no
        # decode-as needed; `-d tcp.port==1720,tpkt` would pick the TPKT heuristic meant
        # for RDP and show the payload as Data). Its H.460 dissector decodes H.460.17's
        # parameter 1 as a RasMessage.
        out = subprocess.run(["tshark", "-r", pcap, "-T", "pdml"], capture_output=True,
                             check=True)
    packets = ET.fromstring(out.stdout).findall("packet")
    if len(packets) != len(rows):
        print("gen_vectors --tshark: %d packets for %d vectors" % (len(packets), len(rows)))
        return 1
    failures = 0
    print(tshark_version())
    for row, packet in zip(rows, packets):
        view = tshark_view(packet)
        expected = {"message_type": row["message_type"], "ras": row["ras"], "gk": row["gk"],
                    "alias": row["alias"], "errors": []}
        # The alias is only taken from GRQ/RRQ; tshark shows the others' aliases too.
        if row["ras"] not in ("grq", "rrq"):
            view["alias"] = None
        ok = view == expected
        failures += not ok
        print("%-4s %-26s type=0x%02x ras=%-4s gatekeeperIdentifier=%s alias=%s" % (
            "ok" if ok else "FAIL", row["name"], view["message_type"] or 0, view["ras"] or "-",
            short(view["gk"]), short(view["alias"])))
        if not ok:
            print("     expected %r" % (expected,))
    print("gen_vectors --tshark: %d of %d vectors confirmed" % (len(rows) - failures, len(rows)))
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true",
                       help="compare a fresh generation with the committed files")
    group.add_argument("--tshark", action="store_true",
                       help="confirm the committed vectors with Wireshark's decoder")
    args = parser.parse_args()
    if args.check:
        return check()
    if args.tshark:
        return run_tshark()
    vs = write_all(HERE)
    print("gen_vectors: wrote %d vectors and %s" % (len(vs), MANIFEST))
    return 0


if __name__ == "__main__":
    sys.exit(main())
