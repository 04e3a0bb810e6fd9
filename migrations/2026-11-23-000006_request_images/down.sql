ALTER TABLE requests DROP COLUMN images;
