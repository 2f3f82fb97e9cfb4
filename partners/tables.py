"""Partner keys: the Ed25519 public keys partners sign requests with."""

from piccolo.columns import BigInt, Varchar
from piccolo.table import Table


class PartnerKey(Table, tablename="partner_keys"):
    """One registered public key. Revocation sets ``revoked_at_us`` and takes effect at once."""

    keyid = Varchar(length=128, primary_key=True)
    partner_id = Varchar(length=64)
    public_key = Varchar(length=64)  # the raw 32-byte Ed25519 key, base64url without padding
    not_before_us = BigInt()
    not_after_us = BigInt()
    revoked_at_us = BigInt(null=True, default=None)
    created_at_us = BigInt()


ALL_TABLES: list[type[Table]] = [PartnerKey]
