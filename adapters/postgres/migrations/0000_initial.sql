CREATE TABLE "hotledger_account_batches" (
	"partner_id" text COLLATE "C" NOT NULL,
	"account_id" text COLLATE "C" NOT NULL,
	"shard" integer NOT NULL,
	"seq" bigint NOT NULL,
	"currency" text NOT NULL,
	"balance" bigint NOT NULL,
	"held" bigint NOT NULL,
	"overdraft_limit" bigint NOT NULL,
	"status" text NOT NULL,
	"entry_seqs" bigint[] NOT NULL,
	"entry_amounts" bigint[] NOT NULL,
	"entry_balances" bigint[] NOT NULL,
	CONSTRAINT "hotledger_account_batches_partner_id_account_id_seq_pk" PRIMARY KEY("partner_id","account_id","seq")
);
--> statement-breakpoint
CREATE TABLE "hotledger_cursors" (
	"sink" text NOT NULL,
	"shard" integer NOT NULL,
	"seq" bigint NOT NULL,
	CONSTRAINT "hotledger_cursors_sink_shard_pk" PRIMARY KEY("sink","shard")
);
--> statement-breakpoint
CREATE TABLE "hotledger_results" (
	"shard" integer NOT NULL,
	"seq" bigint NOT NULL,
	"command_id" text,
	"partner_id" text COLLATE "C" NOT NULL,
	"type" text NOT NULL,
	"code" text NOT NULL,
	"status" text NOT NULL,
	"duplicate" boolean NOT NULL,
	"amount" bigint,
	"balance" bigint,
	"held" bigint,
	"available" bigint,
	"time" timestamp with time zone NOT NULL,
	CONSTRAINT "hotledger_results_shard_seq_pk" PRIMARY KEY("shard","seq")
);
