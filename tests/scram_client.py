"""A small SCRAM-SHA-256 client (RFC 5802 section 3 algorithm, RFC 7677)
written on hashlib/hmac/base64 only, as an independent peer for tests of the
server's SASL code. `self_test()` replays the RFC 7677 section 3 example.

Usage with a protocol session (the caller does the base64 framing):

    client = ScramSha256Client("alice@example.test", "secret")
    first = client.client_first()            # bytes, send base64-encoded
    final = client.client_final(server_first)
    client.verify_server_final(server_final)  # raises ScramError if forged
"""

import base64
import hashlib
import hmac
import os


class ScramError(Exception):
    """The server's messages do not follow RFC 5802 or fail verification."""


def _escape_saslname(name):
    # RFC 5802 5.1: ',' and '=' are sent as "=2C" and "=3D".
    return name.replace("=", "=3D").replace(",", "=2C")


def _parse(message):
    attributes = {}
    for item in message.split(","):
        if len(item) < 2 or item[1] != "=":
            raise ScramError("bad attribute %r" % item)
        attributes.setdefault(item[0], item[2:])
    return attributes


def _hmac(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


class ScramSha256Client:
    """One SCRAM-SHA-256 exchange from the client side."""

    def __init__(self, username, password, authzid="", nonce=None,
                 cbind_flag="n"):
        # The password is used as given (no SASLprep), which is exact for
        # the ASCII passwords the tests use.
        self.username = username
        self.password = password.encode("utf-8")
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode("ascii")
        authz = "a=" + _escape_saslname(authzid) if authzid else ""
        self.gs2_header = cbind_flag + "," + authz + ","
        self.client_first_bare = None
        self.server_signature = None

    def client_first(self):
        self.client_first_bare = (
            "n=" + _escape_saslname(self.username) + ",r=" + self.nonce)
        return (self.gs2_header + self.client_first_bare).encode("utf-8")

    def client_final(self, server_first):
        if isinstance(server_first, bytes):
            server_first = server_first.decode("utf-8")
        attributes = _parse(server_first)
        if "m" in attributes:
            raise ScramError("server requires an unknown extension")
        try:
            nonce = attributes["r"]
            salt = base64.b64decode(attributes["s"], validate=True)
            iterations = int(attributes["i"])
        except (KeyError, ValueError) as e:
            raise ScramError("bad server-first-message: %s" % e)
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise ScramError("server nonce does not extend ours")
        if iterations < 1:
            raise ScramError("bad iteration count")

        # RFC 5802 3: SaltedPassword := Hi(Normalize(password), salt, i)
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt,
                                     iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        channel_binding = base64.b64encode(
            self.gs2_header.encode("utf-8")).decode("ascii")
        without_proof = "c=" + channel_binding + ",r=" + nonce
        auth_message = ",".join(
            [self.client_first_bare, server_first, without_proof])
        client_signature = _hmac(stored_key, auth_message.encode("utf-8"))
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature))
        server_key = _hmac(salted, b"Server Key")
        self.server_signature = _hmac(server_key,
                                      auth_message.encode("utf-8"))
        return (without_proof + ",p=" +
                base64.b64encode(proof).decode("ascii")).encode("utf-8")

    def verify_server_final(self, server_final):
        if isinstance(server_final, bytes):
            server_final = server_final.decode("utf-8")
        attributes = _parse(server_final)
        if "e" in attributes:
            raise ScramError("server error: " + attributes["e"])
        try:
            signature = base64.b64decode(attributes["v"], validate=True)
        except (KeyError, ValueError) as e:
            raise ScramError("bad server-final-message: %s" % e)
        if not hmac.compare_digest(signature, self.server_signature or b""):
            raise ScramError("server signature does not verify")


def self_test():
    """Replays the RFC 7677 section 3 example; raises AssertionError."""
    client = ScramSha256Client("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert client.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert client.client_final(server_first) == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client.verify_server_final(
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    try:
        client.verify_server_final(
            b"v=" + base64.b64encode(b"\0" * 32))
    except ScramError:
        pass
    else:
        raise AssertionError("forged server signature accepted")
    assert _escape_saslname("a,b=c") == "a=2Cb=3Dc"


if __name__ == "__main__":
    self_test()
    print("scram_client self-test passed")
