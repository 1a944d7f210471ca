-- Orders and their lifecycle (API.md "Orders"). status moves only forward:
--   ORDERED -> SHIPPING (ordered_at + 1D) -> DELIVERED (ordered_at + 2D) -> RETURN_REQUESTED
--   -> RETURNED (return_requested_at + 1D); ORDERED -> CANCELLED.
-- Each reached status has its time column; the scheduler writes the scheduled time, not the time
-- it ran. The due indexes serve its queries (status, due time). order_items keep the name and the
-- price at order time; they have no foreign key to products on purpose: its check would take a
-- shared lock on the product row inside the order transaction, which the stock UPDATE then has to
-- upgrade -- concurrent orders of one product would deadlock (products are never deleted).
-- order_transitions is the history: one row per transition, and
-- UNIQUE (order_id, to_status) makes a second copy of a transition impossible.
CREATE TABLE orders (
  id                  BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  user_id             BIGINT UNSIGNED NOT NULL,
  status              ENUM('ORDERED', 'SHIPPING', 'DELIVERED', 'CANCELLED', 'RETURN_REQUESTED', 'RETURNED')
                      NOT NULL,
  total               BIGINT UNSIGNED NOT NULL,
  ordered_at          DATETIME(3) NOT NULL,
  shipped_at          DATETIME(3) NULL,
  delivered_at        DATETIME(3) NULL,
  cancelled_at        DATETIME(3) NULL,
  return_requested_at DATETIME(3) NULL,
  returned_at         DATETIME(3) NULL,
  PRIMARY KEY (id),
  KEY ix_orders_user (user_id, id),
  KEY ix_orders_user_status (user_id, status, id),
  KEY ix_orders_due_ordered (status, ordered_at),
  KEY ix_orders_due_return (status, return_requested_at),
  CONSTRAINT fk_orders_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE order_items (
  order_id   BIGINT UNSIGNED NOT NULL,
  product_id BIGINT UNSIGNED NOT NULL,
  name       VARCHAR(200) NOT NULL,
  price      BIGINT UNSIGNED NOT NULL,
  quantity   INT UNSIGNED NOT NULL,
  PRIMARY KEY (order_id, product_id),
  KEY ix_order_items_product (product_id),
  CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE order_transitions (
  order_id    BIGINT UNSIGNED NOT NULL,
  from_status ENUM('ORDERED', 'SHIPPING', 'DELIVERED', 'CANCELLED', 'RETURN_REQUESTED', 'RETURNED') NULL,
  to_status   ENUM('ORDERED', 'SHIPPING', 'DELIVERED', 'CANCELLED', 'RETURN_REQUESTED', 'RETURNED') NOT NULL,
  at          DATETIME(3) NOT NULL,
  PRIMARY KEY (order_id, to_status),
  CONSTRAINT fk_order_transitions_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
