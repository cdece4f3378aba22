#!/usr/bin/env python3
"""Independent implementation of kube-apiserver's secretbox value format, using libsodium
(PyNaCl), for eargate's cross-check tests.

  make  : print JSON test vectors (key, plaintext, sealed value) sealed by libsodium
  open  : read JSON [{key_b64, name, value_hex}] on stdin, open each with libsodium and
          print JSON [{plaintext_hex}] (null when it does not open)

Value layout: b"k8s:enc:secretbox:v1:" + name + b":" + nonce(24) + crypto_secretbox_easy box.
"""
import base64
import json
import sys

import nacl.exceptions
import nacl.secret
import nacl.utils

PREFIX = b"k8s:enc:secretbox:v1:"


def seal(key: bytes, name: str, plaintext: bytes, nonce: bytes) -> bytes:
    box = nacl.secret.SecretBox(key)
    # EncryptedMessage = nonce + MAC + ciphertext (libsodium crypto_secretbox_easy).
    return PREFIX + name.encode() + b":" + bytes(box.encrypt(plaintext, nonce))


def make() -> None:
    vectors = []
    for i, size in enumerate([0, 1, 15, 16, 17, 63, 64, 65, 1000, 4096, 70000]):
        key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
        nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
        if i % 2 == 0:
            plaintext = b"k8s\x00" + nacl.utils.random(size)
        else:
            plaintext = (b'{"kind":"Secret","data":"' + b"x" * size + b'"}')
        name = f"key-{i}"
        vectors.append({
            "name": name,
            "key_b64": base64.b64encode(key).decode(),
            "nonce_hex": nonce.hex(),
            "plaintext_hex": plaintext.hex(),
            "value_hex": seal(key, name, plaintext, nonce).hex(),
        })
    json.dump(vectors, sys.stdout)


def open_values() -> None:
    out = []
    for item in json.load(sys.stdin):
        key = base64.b64decode(item["key_b64"])
        value = bytes.fromhex(item["value_hex"])
        prefix = PREFIX + item["name"].encode() + b":"
        if not value.startswith(prefix):
            out.append({"plaintext_hex": None})
            continue
        try:
            plaintext = nacl.secret.SecretBox(key).decrypt(value[len(prefix):])
            out.append({"plaintext_hex": plaintext.hex()})
        except nacl.exceptions.CryptoError:
            out.append({"plaintext_hex": None})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    {"make": make, "open": open_values}[sys.argv[1]]()
