package io.edgeopt.core

import java.io.Closeable
import java.sql.Connection
import java.sql.DriverManager
import java.sql.ResultSet

/** One row of a query result; columns are 0-based. */
interface SqlRow {
    fun string(column: Int): String?
    fun long(column: Int): Long
    fun double(column: Int): Double
    fun isNull(column: Int): Boolean

    /** The bytes of a BLOB column, or null for NULL. */
    fun blob(column: Int): ByteArray?
}

/**
 * The little of SQLite the result cache and the vector index need, so that the same [ResultCache] and
 * [VectorIndex] run on JDBC here and on
 * `android.database.sqlite` in the app. An implementation opens the file with the runtime's connection
 * settings: `journal_mode=WAL`, `busy_timeout=10000`, `synchronous=NORMAL`.
 */
interface SqlDatabase : Closeable {
    /** Runs a statement; [args] are String, Long, Int, Double or null. Returns the rows changed. */
    fun update(sql: String, vararg args: Any?): Int

    /** Runs a query (a PRAGMA too) whose arguments are all strings, and maps every row. */
    fun <T> query(sql: String, vararg args: String, map: (SqlRow) -> T): List<T>

    /** Runs [block] in `BEGIN IMMEDIATE ... COMMIT` (rolled back if it throws). */
    fun <T> immediateTransaction(block: () -> T): T
}

/** [SqlDatabase] over JDBC (the xerial sqlite-jdbc driver): the JVM tests and desktop tools. */
class JdbcSqlDatabase private constructor(private val connection: Connection) : SqlDatabase {
    override fun update(sql: String, vararg args: Any?): Int = connection.prepareStatement(sql).use { st ->
        args.forEachIndexed { i, a ->
            when (a) {
                null -> st.setNull(i + 1, java.sql.Types.NULL)
                is String -> st.setString(i + 1, a)
                is Int -> st.setLong(i + 1, a.toLong())
                is Long -> st.setLong(i + 1, a)
                is Double -> st.setDouble(i + 1, a)
                else -> throw IllegalArgumentException("cannot bind ${a::class.simpleName}")
            }
        }
        st.executeUpdate()
    }

    override fun <T> query(sql: String, vararg args: String, map: (SqlRow) -> T): List<T> =
        connection.prepareStatement(sql).use { st ->
            args.forEachIndexed { i, a -> st.setString(i + 1, a) }
            st.executeQuery().use { rs ->
                val row = JdbcRow(rs)
                buildList { while (rs.next()) add(map(row)) }
            }
        }

    override fun <T> immediateTransaction(block: () -> T): T {
        connection.createStatement().use { it.execute("BEGIN IMMEDIATE") }
        try {
            val result = block()
            connection.createStatement().use { it.execute("COMMIT") }
            return result
        } catch (e: Throwable) {
            runCatching { connection.createStatement().use { it.execute("ROLLBACK") } }
            throw e
        }
    }

    override fun close() = connection.close()

    private class JdbcRow(private val rs: ResultSet) : SqlRow {
        override fun string(column: Int): String? = rs.getString(column + 1)
        override fun long(column: Int): Long = rs.getLong(column + 1)
        override fun double(column: Int): Double = rs.getDouble(column + 1)
        override fun isNull(column: Int): Boolean = rs.getObject(column + 1) == null
        override fun blob(column: Int): ByteArray? = rs.getBytes(column + 1)
    }

    companion object {
        /** Opens (creating it when missing) a SQLite file with the runtime's connection settings. */
        fun open(path: java.io.File): JdbcSqlDatabase {
            val connection = DriverManager.getConnection("jdbc:sqlite:${path.path}")
            try {
                connection.autoCommit = true
                connection.createStatement().use { st ->
                    st.execute("PRAGMA busy_timeout = 10000")
                    st.execute("PRAGMA journal_mode = WAL")
                    st.execute("PRAGMA synchronous = NORMAL")
                }
            } catch (e: Throwable) {
                connection.close()
                throw e
            }
            return JdbcSqlDatabase(connection)
        }
    }
}
