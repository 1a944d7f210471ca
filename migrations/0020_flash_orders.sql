-- Flash purchase holds (API.md "Flash purchase"), keyed by the order id the entry script gave out in
-- Redis (product id * 10^9 + the product's entry sequence). Written by the pay path (PAID, in the
-- same transaction as the ordinary order it becomes: order_id) and by the order event pipeline
-- (HELD, EXPIRED, CANCELLED, FAILED). state only moves forward (HELD -> PAID | EXPIRED | CANCELLED |
-- FAILED), so replaying an event is harmless; the primary key makes a second paid order for one
-- hold impossible (UNIQUE order_id too).
CREATE TABLE flash_orders (
  id         BIGINT UNSIGNED NOT NULL,
  product_id BIGINT UNSIGNED NOT NULL,
  user_id    BIGINT UNSIGNED NOT NULL,
  state      ENUM('HELD', 'PAID', 'EXPIRED', 'CANCELLED', 'FAILED') NOT NULL,
  order_id   BIGINT UNSIGNED NULL,
  created_at DATETIME(3) NOT NULL,
  updated_at DATETIME(3) NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_flash_orders_order (order_id),
  KEY ix_flash_orders_product_state (product_id, state),
  CONSTRAINT fk_flash_orders_order FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
