-- Members. Personal data (email, name, phone, address, description) is stored only sealed with
-- host.crypto.seal (XChaCha20-Poly1305; the key id travels inside the sealed bytes, so old rows keep
-- opening after a key rotation). The email is found through email_blind, a keyed hash of the
-- lower-cased address (host.crypto.blind). Times are UTC.
CREATE TABLE users (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  email_blind     VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  email_enc       VARBINARY(512) NOT NULL,
  name_enc        VARBINARY(512) NOT NULL,
  phone_enc       VARBINARY(256) NOT NULL,
  address_enc     VARBINARY(1024) NOT NULL,
  description_enc VARBINARY(4096) NULL,
  profile_img     VARCHAR(1024) NULL,
  password_hash   VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  role            ENUM('USER', 'ADMIN') NOT NULL DEFAULT 'USER',
  status          ENUM('PENDING_VERIFICATION', 'VERIFIED') NOT NULL DEFAULT 'PENDING_VERIFICATION',
  created_at      DATETIME(3) NOT NULL,
  updated_at      DATETIME(3) NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_users_email_blind (email_blind)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
