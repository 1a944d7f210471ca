-- The pending email verification of a user: one live code per user (a resend replaces it). The
-- 6-digit code is kept only as a keyed hash (host.crypto.hmac of "<user id>:<code>"), so a copy of
-- the table does not give the codes away; attempts counts wrong tries (5 lock the code).
CREATE TABLE email_verifications (
  user_id    BIGINT UNSIGNED NOT NULL,
  code_hash  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  expires_at DATETIME(3) NOT NULL,
  attempts   INT UNSIGNED NOT NULL DEFAULT 0,
  created_at DATETIME(3) NOT NULL,
  PRIMARY KEY (user_id),
  CONSTRAINT fk_email_verifications_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
