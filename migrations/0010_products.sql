-- The catalog. price is in won; stock is the number of units on hand (a NORMAL product's stock is
-- decremented here by orders with a conditional UPDATE, never below zero). A FLASH product is sold
-- by the flash purchase between sale_starts_at and sale_ends_at, at most per_user_limit units per
-- member; its sale columns are NULL for a NORMAL product. Times are UTC.
CREATE TABLE products (
  id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name           VARCHAR(200) NOT NULL,
  description    TEXT NOT NULL,
  price          BIGINT UNSIGNED NOT NULL,
  type           ENUM('NORMAL', 'FLASH') NOT NULL DEFAULT 'NORMAL',
  stock          INT UNSIGNED NOT NULL DEFAULT 0,
  sale_starts_at DATETIME(3) NULL,
  sale_ends_at   DATETIME(3) NULL,
  per_user_limit INT UNSIGNED NULL,
  created_at     DATETIME(3) NOT NULL,
  updated_at     DATETIME(3) NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_products_name (name),
  CONSTRAINT ck_products_sale CHECK (type = 'NORMAL' OR (sale_starts_at < sale_ends_at AND per_user_limit >= 1))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
