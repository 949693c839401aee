-- sagas: every saga with its state, current step and last error (queries `sagas`, `saga`),
-- folded from the sagas' own streams ($saga-<id>). Backs GET /v1/sagas and `skaldctl saga
-- list`; docs/sagas.md gives the events.

-- @tables
CREATE TABLE sagas (
    saga_id    TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    state      TEXT NOT NULL,          -- running | compensating | completed | compensated | stuck | aborted
    subject    TEXT NOT NULL,          -- what started it: the order for OrderFulfillment
    step       TEXT NOT NULL,          -- "<phase>:<step name>" of the latest step begun
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,          -- RFC 3339 UTC, fixed width: sorts as time
    last_error TEXT,
    retries    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sagas_by_time ON sagas (updated_at DESC, saga_id);
CREATE INDEX sagas_by_state ON sagas (state, updated_at DESC, saga_id);
CREATE INDEX sagas_by_type ON sagas (type, updated_at DESC, saga_id);

-- @on SagaStarted
INSERT INTO sagas (saga_id, type, state, subject, step, started_at, updated_at)
VALUES (:saga_id, :saga_type, 'running', :subject, '', :occurred_at, :occurred_at);

-- @on SagaStepStarted
UPDATE sagas SET step = :phase || ':' || :name, updated_at = :occurred_at,
                 retries = MAX(retries, :run)
WHERE saga_id = :saga_id;

-- @on SagaStepFinished
UPDATE sagas SET updated_at = :occurred_at,
                 last_error = CASE WHEN :outcome = 'ok' THEN last_error ELSE :reason END
WHERE saga_id = :saga_id;

-- @on SagaStateChanged
UPDATE sagas SET state = :state, updated_at = :occurred_at,
                 last_error = CASE WHEN :reason = '' THEN last_error ELSE :reason END
WHERE saga_id = :saga_id;

-- @query sagas
-- @param state text optional in(running,compensating,completed,compensated,stuck,aborted)
-- @param type text optional
-- @order updated_at DESC, saga_id ASC
SELECT saga_id, type, state,
       CASE WHEN type = 'OrderFulfillment' THEN subject END AS order_id,
       step, updated_at, last_error
FROM sagas
WHERE (:state IS NULL OR state = :state)
  AND (:type IS NULL OR type = :type)

-- @query saga_counts
-- @order state ASC
SELECT state, COUNT(*) AS sagas FROM sagas GROUP BY state
