-- The W3C traceparent of the transaction that queued a delivery (the consumer span of its
-- cause event), so the e-mail it sends later and its NotificationSent stay in that trace.
ALTER TABLE deliveries ADD COLUMN traceparent text;
