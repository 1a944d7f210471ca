-- Idempotency-Key records of creating POSTs: the first request of (user, key) inserts its row in the
-- same transaction as what it creates, so concurrent retries meet the unique key and wait for that
-- transaction; they then read the stored response (status and exact body). request_hash (SHA-256 of
-- method, route and body) tells a retry from another request under the same key (422). Rows are
-- kept at least 24 h (a sweep deletes older ones).
CREATE TABLE idempotency_keys (
  user_id      BIGINT UNSIGNED NOT NULL,
  idem_key     VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  request_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  status       SMALLINT UNSIGNED NOT NULL,
  response     MEDIUMTEXT NOT NULL,
  created_at   DATETIME(3) NOT NULL,
  PRIMARY KEY (user_id, idem_key),
  KEY ix_idempotency_created (created_at),
  CONSTRAINT fk_idempotency_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
