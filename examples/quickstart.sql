-- nbstream quickstart: a stream, a derived stream, a windowed aggregate, a push and a pull query.
SET 'auto.offset.reset' = 'earliest';

CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR KEY, pageid VARCHAR)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=2, TIMESTAMP='viewtime');

CREATE STREAM home_views AS
  SELECT userid, UCASE(pageid) AS page, viewtime FROM pageviews WHERE pageid LIKE 'home%';

CREATE TABLE views_per_user AS
  SELECT userid, COUNT(*) AS views FROM pageviews
  WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY userid EMIT CHANGES;

INSERT INTO pageviews (viewtime, userid, pageid) VALUES (1000, 'u1', 'home_1');
INSERT INTO pageviews (viewtime, userid, pageid) VALUES (2000, 'u2', 'about');
INSERT INTO pageviews (viewtime, userid, pageid) VALUES (3000, 'u3', 'home_2');
INSERT INTO pageviews (viewtime, userid, pageid) VALUES (4000, 'u1', 'cart');

SHOW STREAMS;
SELECT * FROM home_views EMIT CHANGES LIMIT 2;
SELECT * FROM views_per_user WHERE userid = 'u1';
