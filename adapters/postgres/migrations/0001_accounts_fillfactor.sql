-- Custom SQL migration file, put your code below! --
-- Hand-written (drizzle-kit generate --custom): Drizzle cannot declare a table's storage parameters. The accounts
-- table is kept half full so that the upsert of every deliver is a HOT update (schema.ts, accounts).
ALTER TABLE "hotledger_accounts" SET (fillfactor = 50);
