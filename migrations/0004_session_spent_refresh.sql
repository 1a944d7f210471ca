-- Refresh tokens already exchanged (SHA-256, hex), kept for reuse detection while their session
-- lives (a refresh token cannot outlive its session's expires_at).
CREATE TABLE session_spent_refresh (
  refresh_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  session_id   BIGINT UNSIGNED NOT NULL,
  spent_at     DATETIME(3) NOT NULL,
  PRIMARY KEY (refresh_hash),
  KEY ix_spent_session (session_id),
  CONSTRAINT fk_spent_session FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
