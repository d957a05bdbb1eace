"""The report's SQL on Spark: the same metric definitions and aggregates, run where the logs live.

``SparkEngine`` is the Spark twin of ``source.DuckDBEngine``: it registers INPUT as temporary views
(Parquet read by Spark, or a catalog/Hive table by name) and runs the package's SQL text unchanged
(metrics_sql.py writes it in the subset DuckDB and Spark SQL 4 share; ``metrics_sql.SPARK`` spells
the rest). Only aggregates come back to the driver: one row per variant, a few rows for the checks.

    engine = SparkEngine(spark_session("spark://host:7077"))
    source = open_source(table="events_db.units", engine=engine)

Needs PySpark 4 (``pip install 'pyspark>=4'``) and a Java 17+ runtime for a local master.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from pathlib import Path

from abtest.errors import InputError
from abtest.metrics_sql import SPARK, Dialect
from abtest.source import table_format

# Spark's SQL settings the shared SQL text relies on: ANSI semantics with "double-quoted" identifiers
SQL_CONF = {"spark.sql.ansi.enabled": "true", "spark.sql.ansi.doubleQuotedIdentifiers": "true"}
JVM_LOG = Path(tempfile.gettempdir()) / "lsvcr-spark-jvm.log"
LOCAL_CONF = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
              "spark.sql.shuffle.partitions": "4"}
# a new local JVM logs nothing below FATAL: failures reach the user as one InputError line (Spark's
# default profile prints WARN banners and executor stacks on stderr)
LOG4J2 = "\n".join((
    "rootLogger.level = fatal", "rootLogger.appenderRef.stderr.ref = console",
    "logger.repl.name = org.apache.spark.repl.Main", "logger.repl.level = fatal",
    "appender.console.type = Console", "appender.console.name = console", "appender.console.target = SYSTEM_ERR",
    "appender.console.layout.type = PatternLayout", "appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n",
)) + "\n"
# Spark type names -> the DuckDB names the rest of the package (spec.NUMERIC, messages) speaks
TYPES = {"tinyint": "TINYINT", "smallint": "SMALLINT", "int": "INTEGER", "bigint": "BIGINT", "float": "FLOAT",
         "double": "DOUBLE", "boolean": "BOOLEAN", "string": "VARCHAR", "binary": "BLOB", "date": "DATE",
         "timestamp": "TIMESTAMP WITH TIME ZONE", "timestamp_ntz": "TIMESTAMP"}


def _pyspark():
    # PySpark 4.x warns about pandas 3 on its first query; nothing here goes through pandas
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError("--engine spark needs PySpark 4: pip install 'pyspark>=4'") from None
    return SparkSession


def spark_session(master: str | None = None, app_name: str = "lsvcr-abtest"):
    """The active SparkSession, else a new one on ``master`` (default ``local[*]``), with quiet logs."""
    session_cls = _pyspark()
    builder = session_cls.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    active = session_cls.getActiveSession()
    local = active is None and (master or "local").startswith("local")
    if local:
        for key, value in LOCAL_CONF.items():
            builder = builder.config(key, value)
        config = Path(tempfile.gettempdir()) / "lsvcr-spark-log4j2.properties"
        config.write_text(LOG4J2)
        builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{config}")
    try:
        spark = _quiet_start(builder) if active is None else builder.getOrCreate()
    except Exception as e:  # no Java, a master that cannot be reached...
        raise InputError(f"cannot start Spark (master {master or 'local[*]'}): {str(e).splitlines()[0]} "
                         f"(the JVM's own output: {JVM_LOG})") from None
    if local:  # a session of our own: its failures reach the user as InputError lines, not log stacks
        spark.sparkContext.setLogLevel("OFF")
    return spark


def _quiet_start(builder):
    """``builder.getOrCreate()`` with the new JVM's stderr in ``JVM_LOG``: Java and Spark print notices
    there before any log setting applies ("Using incubator modules", "Setting default log level"), and
    a bad input must still reach the user as one line. The JVM keeps that stderr for its lifetime."""
    saved = os.dup(2)
    try:
        with open(JVM_LOG, "ab") as log:
            os.dup2(log.fileno(), 2)
            return builder.getOrCreate()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def hadoop_path(path: Path) -> str:
    """``path`` as a Hadoop path that names it and nothing else (Spark expands ``*?[]{}`` as a glob)."""
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", str(path))


def _type(name: str) -> str:
    name = name.lower()
    if name.startswith("decimal"):
        return name.upper()
    return TYPES.get(name, name.upper())


class SparkEngine:
    """SQL on a SparkSession; INPUT becomes temporary views (cached where it is read more than once)."""

    dialect: Dialect = SPARK
    prefix = "lsvcr_"  # temporary views share the session with the user's tables: units, events... stay theirs

    def __init__(self, spark) -> None:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        self.con = spark
        self.errors = (PySparkException, Py4JError)
        for key, value in SQL_CONF.items():
            spark.conf.set(key, value)
        # PySpark logs every failed query's JSON stack to stderr before raising it; the raised error
        # is enough (it becomes one line, see first_line)
        logging.getLogger("SQLQueryContextLogger").disabled = True
        logging.getLogger("DataFrameQueryContextLogger").disabled = True

    def one(self, sql: str):
        rows = self.all(sql)
        return rows[0] if rows else None

    def all(self, sql: str) -> list:
        return [tuple(row) for row in self.con.sql(sql).collect()]

    def view(self, name: str, sql: str, materialize: bool = False) -> None:
        if materialize:
            self.con.sql(f"DROP VIEW IF EXISTS {name}")  # also drops its cache
            self.con.sql(f"CACHE TABLE {name} AS {sql}")
        else:
            self.con.sql(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def columns(self, name: str) -> dict:
        return {column: _type(kind) for column, kind in self.con.table(name).dtypes}

    def _register(self, name: str, frame) -> str:
        frame.createOrReplaceTempView(self.prefix + name)
        return self.prefix + name

    def named_table(self, name: str) -> str:
        return self._register("input_table", self.con.table(name))  # resolved now, before any view is replaced

    def events(self, run_dir: Path) -> str:
        file, folder = run_dir / "events.parquet", run_dir / "events"
        if file.is_file():
            return self._register("events", self.con.read.parquet(hadoop_path(file)))
        if folder.is_dir():  # partition columns (shard=0/...) discovered as Hive-style partitions
            return self._register("events", self.con.read.option("mergeSchema", "true").parquet(hadoop_path(folder)))
        raise InputError(f"{run_dir}: no events.parquet or events/ in this run directory")

    def assignment(self, run_dir: Path) -> str | None:
        file = run_dir / "assignment.parquet"
        return self._register("assignment", self.con.read.parquet(hadoop_path(file))) if file.is_file() else None

    def table_file(self, path: Path) -> str:
        if table_format(path) == "csv":
            sep = "\t" if ".tsv" in path.name.lower() else ","
            # RFC 4180: a quote inside a quoted field is doubled ("a""b"), not backslash-escaped
            frame = self.con.read.csv(hadoop_path(path), header=True, inferSchema=True, sep=sep, escape='"')
        else:  # a file, or a folder of Parquet files whose schemas are merged by name
            frame = self.con.read.option("mergeSchema", "true").parquet(hadoop_path(path))
        return self._register("input_table", frame)

    def first_line(self, error: Exception) -> str:
        """Spark's message without its plan dump and SQLSTATE tail: one line."""
        java = getattr(error, "java_exception", None)  # a Py4JJavaError says only "error calling o34.parquet"
        text = str(java.getMessage() if java is not None else error).strip() or type(error).__name__
        return re.sub(r"\s*SQLSTATE: \w+.*$", "", text.splitlines()[0])


__all__ = ["SparkEngine", "spark_session"]
