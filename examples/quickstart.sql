-- nbstream quickstart: a stream, a derived stream, and a push query over it.
SET 'auto.offset.reset' = 'earliest';

CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR KEY, pageid VARCHAR)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=2, TIMESTAMP='viewtime');

CREATE STREAM home_views AS
  SELECT userid, UCASE(pageid) AS page, viewtime FROM pageviews WHERE pageid LIKE 'home%';

INSERT INTO pageviews (viewtime, userid, pageid) VALUES (1000, 'u1', 'home_1');
INSERT INTO pageviews (viewtime, userid, pageid) VALUES (2000, 'u2', 'about');
INSERT INTO pageviews (viewtime, userid, pageid) VALUES (3000, 'u3', 'home_2');

SHOW STREAMS;
SELECT * FROM home_views EMIT CHANGES LIMIT 2;
