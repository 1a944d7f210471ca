-- Mail waiting to be delivered, written in the same transaction as what caused it. The whole message
-- (recipient, subject, body -- the body carries the address in the verification link) is sealed
-- with host.crypto.seal, so the table holds no plaintext address. A sender claims due rows with
-- SELECT ... FOR UPDATE SKIP LOCKED and pushes next_attempt_at past its delivery (a lease), so one
-- row is delivered by one sender at a time; sent_at marks it done; failures back off.
CREATE TABLE mail_outbox (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  user_id         BIGINT UNSIGNED NULL,
  kind            VARCHAR(32) CHARACTER SET ascii NOT NULL,
  message_enc     VARBINARY(16384) NOT NULL,
  created_at      DATETIME(3) NOT NULL,
  attempts        INT UNSIGNED NOT NULL DEFAULT 0,
  next_attempt_at DATETIME(3) NOT NULL,
  sent_at         DATETIME(3) NULL,
  last_error      VARCHAR(255) NULL,
  PRIMARY KEY (id),
  KEY ix_mail_outbox_due (sent_at, next_attempt_at),
  CONSTRAINT fk_mail_outbox_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
