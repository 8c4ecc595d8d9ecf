package io.edgeopt.demo

import android.database.Cursor
import android.database.sqlite.SQLiteDatabase
import io.edgeopt.core.SqlDatabase
import io.edgeopt.core.SqlRow
import java.io.File

/** [SqlDatabase] on `android.database.sqlite`, with the runtime's settings (WAL, busy timeout, synchronous=NORMAL). */
class AndroidSqlDatabase private constructor(private val db: SQLiteDatabase) : SqlDatabase {
    override fun update(sql: String, vararg args: Any?): Int {
        if (sql.trimStart().startsWith("PRAGMA", ignoreCase = true)) {
            db.execSQL(sql) // PRAGMA statements cannot be compiled into an SQLiteStatement
            return 0
        }
        return db.compileStatement(sql).use { st ->
            args.forEachIndexed { i, a ->
                when (a) {
                    null -> st.bindNull(i + 1)
                    is String -> st.bindString(i + 1, a)
                    is Int -> st.bindLong(i + 1, a.toLong())
                    is Long -> st.bindLong(i + 1, a)
                    is Double -> st.bindDouble(i + 1, a)
                    else -> throw IllegalArgumentException("cannot bind ${a::class.simpleName}")
                }
            }
            st.executeUpdateDelete()
        }
    }

    override fun <T> query(sql: String, vararg args: String, map: (SqlRow) -> T): List<T> =
        db.rawQuery(sql, args).use { cursor ->
            val row = CursorRow(cursor)
            buildList { while (cursor.moveToNext()) add(map(row)) }
        }

    override fun <T> immediateTransaction(block: () -> T): T {
        db.beginTransactionNonExclusive() // BEGIN IMMEDIATE
        try {
            val result = block()
            db.setTransactionSuccessful()
            return result
        } finally {
            db.endTransaction()
        }
    }

    override fun close() = db.close()

    private class CursorRow(private val c: Cursor) : SqlRow {
        override fun string(column: Int): String? = if (c.isNull(column)) null else c.getString(column)
        override fun long(column: Int): Long = c.getLong(column)
        override fun double(column: Int): Double = c.getDouble(column)
        override fun isNull(column: Int): Boolean = c.isNull(column)
        override fun blob(column: Int): ByteArray? = if (c.isNull(column)) null else c.getBlob(column)
    }

    companion object {
        fun open(file: File): AndroidSqlDatabase {
            val db = SQLiteDatabase.openDatabase(
                file.path,
                null,
                SQLiteDatabase.OPEN_READWRITE or SQLiteDatabase.CREATE_IF_NECESSARY or SQLiteDatabase.ENABLE_WRITE_AHEAD_LOGGING,
            )
            db.rawQuery("PRAGMA busy_timeout = 10000", null).use { it.moveToFirst() }
            db.execSQL("PRAGMA synchronous = NORMAL")
            return AndroidSqlDatabase(db)
        }
    }
}
