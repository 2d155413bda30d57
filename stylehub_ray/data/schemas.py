"""Schemas of the H&M source files and of the typed tables ingest writes (docs/DATA.md)."""

from __future__ import annotations

import pyarrow as pa

# The columns of the Kaggle CSV files, in file order.
ARTICLE_COLUMNS = [
    "article_id", "product_code", "prod_name", "product_type_no", "product_type_name",
    "product_group_name", "graphical_appearance_no", "graphical_appearance_name",
    "colour_group_code", "colour_group_name", "perceived_colour_value_id",
    "perceived_colour_value_name", "perceived_colour_master_id", "perceived_colour_master_name",
    "department_no", "department_name", "index_code", "index_name", "index_group_no",
    "index_group_name", "section_no", "section_name", "garment_group_no", "garment_group_name",
    "detail_desc",
]
CUSTOMER_COLUMNS = [
    "customer_id", "FN", "Active", "club_member_status", "fashion_news_frequency", "age",
    "postal_code",
]
TRANSACTION_COLUMNS = ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"]

SOURCE_FILES = {
    "articles": ("articles.csv", ARTICLE_COLUMNS),
    "customers": ("customers.csv", CUSTOMER_COLUMNS),
    "transactions": ("transactions_train.csv", TRANSACTION_COLUMNS),
}

ARTICLE_INT_COLUMNS = [
    "product_code", "product_type_no", "graphical_appearance_no", "colour_group_code",
    "perceived_colour_value_id", "perceived_colour_master_id", "department_no",
    "index_group_no", "section_no", "garment_group_no",
]

ARTICLES = pa.schema(
    [("article_id", pa.int64()), ("article_idx", pa.int32())]
    + [(c, pa.int32() if c in ARTICLE_INT_COLUMNS else pa.string())
       for c in ARTICLE_COLUMNS if c != "article_id"]
)
CUSTOMERS = pa.schema([
    ("customer_id", pa.string()), ("customer_idx", pa.int32()), ("FN", pa.float32()),
    ("Active", pa.float32()), ("club_member_status", pa.string()),
    ("fashion_news_frequency", pa.string()), ("age", pa.float32()), ("postal_code", pa.string()),
])
TRANSACTIONS = pa.schema([
    ("t_dat", pa.date32()), ("customer_idx", pa.int32()), ("article_id", pa.int64()),
    ("article_idx", pa.int32()), ("price", pa.float64()), ("sales_channel_id", pa.int8()),
    ("week", pa.string()),  # partition key: the Wednesday that starts the H&M week
])
CUSTOMER_MAP = pa.schema([("customer_id", pa.string()), ("customer_idx", pa.int32())])
ARTICLE_MAP = pa.schema([("article_id", pa.int64()), ("article_idx", pa.int32())])
IMAGES = pa.schema([
    ("article_id", pa.int64()), ("article_idx", pa.int32()), ("path", pa.string()),
    ("status", pa.string()), ("reason", pa.string()),
])
QUARANTINE = pa.schema([
    ("table", pa.string()), ("source", pa.string()), ("line_number", pa.int64()),
    ("line", pa.string()), ("field", pa.string()), ("value", pa.string()),
    ("reason", pa.string()),
])


def article_id_str(article_id: int) -> str:
    """The 10-digit zero-padded form users read (submission, API, image paths)."""
    return f"{int(article_id):010d}"
