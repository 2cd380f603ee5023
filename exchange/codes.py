"""The one table of reject codes.

Every rejected command produces an event that carries a numeric code and the
code's text from this table. Codes are grouped by the stage of the pipeline
that refuses the command, in ranges of one hundred, as exchange-core groups
its result codes:

    100-199  validation   the command itself is malformed or breaks an instrument rule
    200-299  risk         the account cannot pay for or deliver what it asks (pre-trade risk)
    300-399  matching     the order is valid but the book's state refuses it
    400-499  order state  cancel / replace / mass cancel against orders that are not there
    500-599  admin        engine-level commands (end of day, unknown command kinds)
    600-699  compliance   installations, emissions, surrenders and deadlines (EU ETS registry rules)
    700-799  session      the gateway's: logon, framing, message fields, throttle, heartbeats (docs/PROTOCOL.md)

A number, once published, is never reused for another meaning; a code that
is retired stays in the table, marked as retired.
"""

from enum import IntEnum


class RejectCode(IntEnum):
    text: str

    def __new__(cls, value: int, text: str) -> "RejectCode":
        member = int.__new__(cls, value)
        member._value_ = value
        member.text = text
        return member

    # -- 100: validation ------------------------------------------------------------------
    UNKNOWN_INSTRUMENT = 101, "unknown instrument"
    INVALID_SIDE = 102, "side must be B (buy) or S (sell)"
    INVALID_QUANTITY = 103, "quantity must be a whole number of lots"
    QUANTITY_BELOW_MINIMUM = 104, "quantity is below the instrument's minimum order size"
    QUANTITY_ABOVE_MAXIMUM = 105, "quantity is above the instrument's maximum order size"
    INVALID_PRICE = 106, "price must be a whole number of cents"
    PRICE_NOT_ON_TICK = 107, "price is not a multiple of the instrument's tick size"
    PRICE_OUT_OF_RANGE = 108, "price is outside the instrument's allowed price range"
    PRICE_REQUIRED = 109, "a limit order needs a price"
    PRICE_NOT_ALLOWED = 110, "a market order must not carry a price"
    INVALID_ORDER_TYPE = 111, "order type must be LIMIT or MARKET"
    INVALID_TIME_IN_FORCE = 112, "time in force must be GTC, DAY, IOC, FOK or GTD"
    INVALID_DISPLAY_QUANTITY = (
        113,
        "display quantity must be a whole number of lots, at least the instrument's minimum and at most the order quantity",
    )
    INVALID_STOP_PRICE = 114, "stop price must be a positive whole number of cents on the tick"
    EXPIRE_DATE_REQUIRED = 115, "a GTD order needs an expire date"
    INVALID_EXPIRE_DATE = 116, "expire date must be a calendar date written as YYYYMMDD, and only a GTD order has one"
    EXPIRE_DATE_PASSED = 117, "expire date is not after the last trading day already closed"
    INVALID_SELF_TRADE_MODE = 118, "self-trade prevention must be NONE, CANCEL_RESTING, CANCEL_TAKING or CANCEL_BOTH"
    INVALID_CLIENT_ORDER_ID = (
        119,
        "client order id must be a non-empty string of at most 64 characters or a non-negative integer",
    )
    INVALID_ACCOUNT = 120, "account must be a non-empty string"
    INVALID_COMBINATION = 121, "this combination of order type, time in force and options is not offered"
    INVALID_TIMESTAMP = 122, "timestamp must be a non-negative integer of nanoseconds"
    INVALID_POST_ONLY = 123, "post-only must be true or false"

    INVALID_AMOUNT = 124, "amount must be a positive whole number (cents for EUR, units for an instrument)"
    UNKNOWN_ASSET = 125, "asset must be EUR or the symbol of an instrument"
    INSTRUMENT_CLOSED = 126, "the instrument is closed: no new orders or replaces (cancels are taken)"
    TRADING_HALTED = 127, "trading in the instrument is halted: no new orders or replaces (cancels are taken)"
    INVALID_TRADING_PHASE = (
        128,
        "trading phase must be closed, opening_call, continuous, closing_call, volatility_interruption or halted",
    )
    INVALID_BLOCK_KIND = 129, "kind must be block or efp, and a physical price is given for an efp (only)"
    BLOCK_BELOW_MINIMUM = 130, "a block trade or EFP is at least the contract's minimum block size (EUA: 50 lots)"
    INVALID_COUNTERPARTY = 131, "counterparty must be another account open at the exchange"

    # -- 200: risk (pre-trade checks) -----------------------------------------------------
    UNKNOWN_ACCOUNT = 201, "no such account: accounts are opened by the exchange"
    INSUFFICIENT_CASH = 202, "not enough available cash (cash less what open orders hold back)"
    INSUFFICIENT_UNITS = 203, "not enough available units (units less what open orders hold back)"
    ORDER_VALUE_OVER_LIMIT = 204, "order value (price x quantity x lot) is over the account's limit"
    PRICE_OUTSIDE_BAND = 205, "price is outside the band around the reference price"
    ACCOUNT_BLOCKED = 206, "account is blocked by the exchange's kill switch: no new orders"
    MARGIN_CALL = 207, "account is on a margin call: no new futures orders until its cash covers its margin"
    NOT_ON_MARGIN_CALL = 208, "only an account on a margin call is closed out"

    # -- 300: matching ----------------------------------------------------------------------
    POST_ONLY_WOULD_TAKE = 301, "post-only order would trade on entry"
    NOT_TAKEN_IN_CALL = 302, "market, IOC, FOK and post-only orders are not taken during an auction call"

    # -- 400: order state -----------------------------------------------------------------
    DUPLICATE_CLIENT_ORDER_ID = 401, "client order id already used by this account today"
    UNKNOWN_ORDER = 402, "no such order"
    ORDER_CLOSED = 403, "order is already filled, cancelled or expired (too late)"
    NOT_ORDER_OWNER = 404, "order belongs to another account"
    ORDER_REFERENCE_REQUIRED = 405, "give exactly one of order id and client order id"
    REPLACE_QUANTITY_NOT_ABOVE_FILLED = 406, "new quantity must be above the quantity already filled"
    REPLACE_CHANGES_NOTHING = 407, "replace changes neither price nor quantity"
    DUPLICATE_BLOCK_ID = 408, "block id already reported today by this account with this counterparty"
    BLOCK_TERMS_DIFFER = 409, "the counterparty reported this block id with other terms (contract, side, lots, prices)"

    # -- 500: admin -------------------------------------------------------------------------
    UNKNOWN_COMMAND = 501, "unknown command"
    INVALID_TRADING_DATE = 502, "trading date must be a calendar date written as YYYYMMDD"
    TRADING_DATE_NOT_AFTER_LAST = 503, "trading date must be after the last trading day closed"
    ACCOUNT_ALREADY_OPEN = 504, "an account with this id is already open"
    PHASE_CHANGE_NOT_ALLOWED = 505, "the instrument cannot go from its current trading phase to the one asked for"
    SETTLEMENT_WINDOW_OPEN = 506, "the instrument's settlement window is already open (it closes with the day)"
    INVALID_SCHEDULE_CHANGE = 507, "a trading day's extension is a whole number of minutes from 1 to 1440"
    SCHEDULE_POINT_PASSED = 508, "that schedule point of the trading day is done or due (being carried out)"
    NO_TRADING_CALENDAR = 509, "the exchange does not run its trading days on a calendar (schedule is manual)"
    END_OF_DAY_NOT_SKIPPED = 510, "the end of day cannot be skipped: extend the trading day instead"
    NO_FUTURES = 511, "the exchange lists no futures (none are configured)"
    NOT_A_FUTURES_CONTRACT = 512, "block trades and EFPs are registered on listed futures contracts only"
    NO_MARKET_PRICE = 513, "the contract has neither traded nor settled yet: no block trade until it has a price"

    # -- 600: compliance (exchange.compliance) ----------------------------------------------
    # An unknown account, an unknown instrument and too few available units reuse 201, 101 and 203.
    NOT_AN_INSTALLATION = 601, "account is not a registered installation"
    INSTALLATION_ALREADY_REGISTERED = 602, "account is already registered as an installation"
    INVALID_CREDIT_LIMIT = 603, "credit limit must be a whole number of basis points from 0 to 10000"
    INVALID_YEAR = 604, "year must be a whole number from 2005 to 9998"
    INVALID_EMISSIONS = 605, "emissions must be a whole number of tonnes, zero or more"
    INVALID_DEADLINE_DATE = (
        606,
        "deadline date must be a calendar date written as YYYYMMDD, in a year after the compliance year",
    )
    EMISSIONS_ALREADY_RECORDED = 607, "emissions for this installation and year are already recorded (no corrections)"
    NO_EMISSIONS_RECORDED = 608, "no obligation for this year: no emissions recorded and nothing carried over"
    INSTRUMENT_NOT_ELIGIBLE = (
        609,
        "instrument does not count for compliance (neither an allowance nor an eligible credit)",
    )
    CREDIT_LIMIT_EXCEEDED = (
        610,
        "project credits would exceed the installation's entitlement (its share of allocation or obligation)",
    )
    SURRENDER_EXCEEDS_OBLIGATION = 611, "units would exceed the obligation still outstanding for the year"
    COMPLIANCE_YEAR_CLOSED = 612, "the surrender deadline for this year has passed"
    DEADLINE_OUT_OF_ORDER = (
        613,
        "a deadline must follow the last one (later year, later date) with no earlier year still open",
    )
    UNIT_NOT_ELIGIBLE_FOR_YEAR = (
        614,
        "these units do not count for this year (their period, type or project is not accepted in its phase)",
    )
    YEAR_OUTSIDE_PHASES = 615, "no compliance phase is configured for this year"
    DEADLINE_NOT_DUE = 616, "the year's surrender deadline has not come yet"
    ALLOCATION_ALREADY_RECORDED = 617, "allocation for this installation and year is already recorded"
    INVALID_ALLOCATION = 618, "allocation must be a whole number of units, zero or more"

    # -- 700: session and protocol (the gateway: gateway.wire.protocol, gateway.node) ------------
    # "closes" marks the codes after which the exchange ends the connection (a logout carries the code).
    NOT_LOGGED_ON = 701, "log on first: logon is the only message accepted before it (closes)"
    LOGON_FAILED = 702, "logon refused: unknown account or wrong secret (closes)"
    ALREADY_LOGGED_ON = 703, "the account already has a session open (closes)"
    FRAME_TOO_LARGE = 704, "frame length is zero or above the maximum frame size (closes)"
    MALFORMED_FRAME = 705, "frame body is not exactly one MessagePack map (closes)"
    UNKNOWN_MESSAGE_TYPE = 706, "unknown or missing message type"
    INVALID_FIELD = 707, "a field is missing, not known for this message type, or of the wrong type"
    THROTTLED = 708, "over the session's message rate: the message was not processed"
    HEARTBEAT_TIMEOUT = 709, "nothing received within the heartbeat timeout (closes)"
    SLOW_CONSUMER = 710, "the session fell too far behind reading its messages (closes)"
    SHUTTING_DOWN = 711, "the exchange is shutting down (closes)"
    NOT_AUTHORISED = (
        712,
        "this account may not send this message (operators only; open_auction: auctioneers; compliance records: "
        "authorities)",
    )
    LOGON_TIMEOUT = 713, "no logon within the logon timeout (closes)"
    ALREADY_LOGGED_ON_HERE = 714, "this connection is already logged on"
    TOO_MANY_SESSIONS = 715, "the exchange has all the sessions it takes (closes)"
    SNAPSHOT_FAILED = 716, "the snapshot could not be written (the journal has everything; see the exchange's log)"
    LOGON_LOCKED = (
        717,
        "too many failed logons for this account or from this address: try again after retry_after seconds (closes)",
    )
    TOO_MANY_PENDING_LOGONS = 718, "too many connections waiting to log on, in all or from this address (closes)"
    OVERLOADED = 719, "the exchange is over capacity: the message was not processed, send it again later"
    MARKET_DATA_SESSION = (
        720,
        "a market-data session may only subscribe, unsubscribe, ask for the book, ping, send heartbeats and log out",
    )
    CERTIFICATE_MISMATCH = (
        721,
        "logon refused: the client certificate is not this account's (its subject CN must be the account) (closes)",
    )

    # -- 800: EU ETS primary auctions (exchange.primary_auction) ----------------------------------------
    UNKNOWN_AUCTION = 801, "no such primary auction"
    AUCTION_ID_IN_USE = 802, "a primary auction with this id exists already"
    INVALID_AUCTION_VOLUME = 803, "volume must be a positive whole number of allowances, in multiples of 500"
    BIDDING_CLOSED = 804, "the auction's bidding window has closed"
    DUPLICATE_BID_ID = 805, "bid id already used by this account in this auction"
    UNKNOWN_BID = 806, "no such open bid of this account in this auction"
    INVALID_SEED = 807, "seed must be 32 to 128 hexadecimal digits"
    BIDDING_NOT_CLOSED = 808, "the auction's bidding window has not closed yet"
    INVALID_AUCTION_ID = 809, "auction id must be 1 to 32 letters, digits, dashes or underscores"
    INVALID_BID_PRICE = (
        810,
        "bid price must be a positive whole number of cents, at most the instrument's highest price",
    )
    AUCTIONEER_MAY_NOT_BID = 811, "the auctioneer may not bid in its own auction"
    INVALID_RESERVE_DISCOUNT = 812, "reserve discount must be a whole number of basis points from 0 to 10000"
    INVALID_AUCTION_FEE = 813, "auction fee must be a whole number of cents per lot of 500, from 0 to 100000"
    BIDDER_NOT_ADMITTED = 814, "the account is not admitted to bid in primary auctions"
