-- The README's five-statement tour, for psql (on its own table, quickstart_items):
--   psql -h 127.0.0.1 -p 5433 -U postgres -v ON_ERROR_STOP=1 -f examples/quickstart.sql
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f examples/quickstart.sql    # another server
CREATE EXTENSION IF NOT EXISTS vector;
DROP TABLE IF EXISTS quickstart_items;
CREATE TABLE quickstart_items (id bigserial PRIMARY KEY, category text, embedding vector(3));
INSERT INTO quickstart_items (category, embedding) VALUES
    ('fruit', '[1,2,3]'), ('fruit', '[4,5,6]'), ('veg', '[1,1,1]'), ('veg', '[9,9,9]');
CREATE INDEX ON quickstart_items USING hnsw (embedding vector_l2_ops) WITH (m = 16, ef_construction = 64);
SELECT id, category, embedding <-> '[1,2,2]' AS distance
  FROM quickstart_items WHERE category = 'fruit'
 ORDER BY embedding <-> '[1,2,2]' LIMIT 2;
EXPLAIN SELECT id FROM quickstart_items WHERE category = 'fruit'
 ORDER BY embedding <-> '[1,2,2]' LIMIT 2;
