-- Requests whose token counts the host estimated because the model server reported none
-- (proxy/estimate.rs); their tokens are included in input_tokens/output_tokens.
ALTER TABLE usage ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0;
