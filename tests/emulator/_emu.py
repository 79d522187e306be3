"""The key the emulator's API is deployed with (its SHA-256 goes in as the template parameter)."""

import hashlib

API_KEY = "emulator-key-0123456789"
API_KEY_SHA256 = hashlib.sha256(API_KEY.encode()).hexdigest()
KEY = {"x-api-key": API_KEY}
