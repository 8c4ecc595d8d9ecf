package io.edgeopt.core

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import java.io.File
import java.nio.file.Files
import kotlin.math.abs
import kotlin.math.pow

/** The core reads the index files the Python runtime wrote and ranks every query as `Index.search` did. */
class VectorIndexTest {
    private fun embedder(backend: String = EmbedGolden.index.getString("backend")) =
        TextEmbedder(EmbedGolden.manifest, EmbedGolden.tokenizer, ReplayEmbedModel(backend))

    private fun open(precision: String, embedder: TextEmbedder = embedder()): VectorIndex =
        VectorIndex.open(EmbedGolden.indexFile(precision), embedder, JdbcSqlDatabase::open)

    private fun assertSameHits(want: List<SearchHit>, got: List<SearchHit>, what: String) {
        assertEquals(want.map { it.id }, got.map { it.id }, what)
        want.zip(got).forEach { (w, g) -> assertTrue(abs(w.score - g.score) <= 1e-5, "$what: ${w.id} scored ${g.score}, Python ${w.score}") }
    }

    @TestFactory
    fun `every query ranks the rows as the runtime does`(): List<DynamicTest> = EmbedGolden.precisions.flatMap { precision ->
        EmbedGolden.queries.flatMap { query ->
            EmbedGolden.backendNames.map { backend ->
                DynamicTest.dynamicTest("$precision, $backend: ${query.getString("text")}") {
                    val entry = query.getJSONObject("backends").getJSONObject(backend)
                    val results = entry.getJSONObject("results").getJSONObject(precision)
                    val mine = embedder(backend).vectors(EmbedGolden.raw(entry, backend)).single()
                    open(precision).use { index ->
                        for (k in results.keys().asSequence().map { it.toString() }) {
                            val want = results.getJSONArray(k).hits()
                            assertEquals(minOf(k.toInt(), index.size), want.size)
                            // Python's query vector: the index alone is compared.
                            assertSameHits(want, index.search(EmbedGolden.vector(entry), k.toInt()), "k=$k, Python's vector")
                            // The vector the Kotlin embedder made from the model's raw output: embedder and index together.
                            assertSameHits(want, index.search(mine, k.toInt()), "k=$k, Kotlin's vector")
                        }
                        val all = results.getJSONArray(results.keys().asSequence().map { it.toString() }.maxBy { it.toInt() }).hits()
                        for (k in listOf(1, 3, all.size)) assertSameHits(all.take(k), index.search(mine, k), "k=$k as a prefix")
                    }
                }
            }
        }
    }

    @Test
    fun `scores differ from Python's by float32 rounding only`() {
        // numpy's sgemv sums in float32 in its own order, the core in double: printed for the record, held to 1e-6.
        var worst = 0.0
        var compared = 0
        for (precision in EmbedGolden.precisions) open(precision).use { index ->
            for (query in EmbedGolden.queries) for (backend in EmbedGolden.backendNames) {
                val entry = query.getJSONObject("backends").getJSONObject(backend)
                val results = entry.getJSONObject("results").getJSONObject(precision)
                val all = results.getJSONArray(results.keys().asSequence().map { it.toString() }.maxBy { it.toInt() }).hits()
                val got = index.search(EmbedGolden.vector(entry), all.size).associate { it.id to it.score }
                for (hit in all) {
                    worst = maxOf(worst, abs(hit.score - got.getValue(hit.id)))
                    compared++
                }
            }
        }
        println("index parity: $compared scores, largest difference from Python's $worst")
        assertTrue(worst <= 1e-6, "largest score difference $worst")
    }

    @Test
    fun `text queries go through the embedder`() {
        val backend = EmbedGolden.index.getString("backend")
        open("int8", embedder(backend)).use { index ->
            for (query in EmbedGolden.queries) {
                val results = query.getJSONObject("backends").getJSONObject(backend).getJSONObject("results").getJSONObject("int8")
                val want = results.getJSONArray("5").hits()
                assertSameHits(want, index.search(query.getString("text"), 5), query.getString("text"))
            }
            assertEquals("text is empty or whitespace only; pass at least one word", assertThrows<InputError> { index.search(" ", 5) }.message)
        }
        VectorIndex.open(EmbedGolden.indexFile("int8"), EmbedGolden.fingerprint, EmbedGolden.dim, JdbcSqlDatabase::open).use { index ->
            assertTrue(assertThrows<InputError> { index.search("hello") }.message!!.contains("opened without an embedder"))
        }
    }

    @Test
    fun `equal scores go to the lower id in code-point order`() {
        val dups = EmbedGolden.indexTexts.entries.groupBy({ it.value }, { it.key }).values.filter { it.size > 1 }.single()
        val byCodePoint = dups.sortedWith(PyCompat.codePointOrder)
        assertTrue(byCodePoint != dups.sorted(), "the duplicate ids must sort differently by UTF-16 and by code point")
        val query = EmbedGolden.queries.first { it.getString("text") == EmbedGolden.indexTexts.getValue(dups.first()) }
        for (precision in EmbedGolden.precisions) {
            open(precision).use { index ->
                val hits = index.search(EmbedGolden.vector(query.getJSONObject("backends").getJSONObject("onnx")), 2)
                assertEquals(byCodePoint, hits.map { it.id }, precision)
                assertEquals(hits[0].score, hits[1].score, 0.0)
            }
        }
    }

    @Test
    fun `the index's settings, ids and texts are the Python ones`() {
        for (precision in EmbedGolden.precisions) {
            open(precision).use { index ->
                val rows = EmbedGolden.index.getJSONObject("files").getJSONObject(precision).getInt("rows")
                assertEquals(IndexStats(rows, rows, EmbedGolden.dim, precision, EmbedGolden.fingerprint), index.stats())
                assertEquals(EmbedGolden.indexTexts.size, index.size)
                for ((id, text) in EmbedGolden.indexTexts) {
                    assertTrue(id in index, id)
                    assertEquals(text, index.text(id))
                }
                assertEquals(false, "missing" in index)
                assertEquals(null, index.text("missing"))
                assertEquals(index.size, index.search(FloatArray(EmbedGolden.dim) { 1f }, 1000).size)
            }
        }
        JdbcSqlDatabase.open(EmbedGolden.indexFile("int8")).use { db ->
            assertEquals(INDEX_APPLICATION_ID.toLong(), db.query("PRAGMA application_id") { it.long(0) }.single())
            assertEquals(INDEX_SCHEMA_VERSION.toLong(), db.query("PRAGMA user_version") { it.long(0) }.single())
        }
    }

    @Test
    fun `bad queries are refused`() {
        open("int8").use { index ->
            assertEquals("k 0 must be a positive integer", assertThrows<InputError> { index.search(FloatArray(EmbedGolden.dim), 0) }.message)
            assertEquals(
                "a query vector must be ${EmbedGolden.dim} finite numbers, got shape (3,)",
                assertThrows<InputError> { index.search(FloatArray(3), 5) }.message,
            )
            val nan = FloatArray(EmbedGolden.dim).also { it[0] = Float.NaN }
            assertTrue(assertThrows<InputError> { index.search(nan, 5) }.message!!.startsWith("a query vector must be"))
            // A zero query scores every row 0: the order is then the ids'.
            val ids = EmbedGolden.indexTexts.keys.sortedWith(PyCompat.codePointOrder)
            assertEquals(ids.take(4), index.search(FloatArray(EmbedGolden.dim), 4).map { it.id })
        }
    }

    @Test
    fun `another model's index is refused with the fix`() {
        val other = EmbedGolden.manifest.copy(fingerprint = "e".repeat(64))
        val file = EmbedGolden.indexFile("int8")
        val e = assertThrows<IndexMismatch> {
            VectorIndex.open(file, TextEmbedder(other, EmbedGolden.tokenizer, ReplayEmbedModel("onnx")), JdbcSqlDatabase::open)
        }
        assertEquals(
            "index ${file.path} holds ${EmbedGolden.indexTexts.size} vectors of model ${EmbedGolden.fingerprint.take(12)}, not of this bundle's eeeeeeeeeeee; " +
                "re-embed its texts with this bundle (Python: Index(path, bundle, reembed=True), or --reembed) and ship that file, or build a new index",
            e.message,
        )
    }

    @Test
    fun `files that are not an edgeopt index are refused and left as they were`() {
        val dir = Files.createTempDirectory("notindex").toFile()
        val cache = Golden.copy(Golden.json.getJSONObject("cache").getString("file"), dir)
        val text = File(dir, "notes.txt").apply { writeText("id,text\n1,hello\n") }
        val empty = File(dir, "empty.sqlite").apply { createNewFile() }
        val cases = mapOf(
            File(dir, "missing.sqlite") to "index ${dir.path}/missing.sqlite does not exist; build it with the Python runtime (edgeopt-runtime index add) and ship it with the app",
            dir to "index path ${dir.path} is not a file; choose a file path",
            empty to "${empty.path} is an empty file, not an edgeopt index yet; add texts to it with the Python runtime first",
            text to "${text.path} is not an edgeopt index (not an SQLite database); choose another file",
            cache to "${cache.path} is an SQLite file of another application (application_id 0x65646f70), not an edgeopt index; choose another file",
        )
        for ((file, message) in cases) {
            val before = if (file.isFile) file.readBytes() else null
            assertEquals(message, assertThrows<IndexInvalid> { VectorIndex.open(file, embedder(), JdbcSqlDatabase::open) }.message)
            if (before != null) assertArrayEquals(before, file.readBytes(), file.name)
        }
        assertEquals(false, File(dir, "missing.sqlite").exists())
    }

    @Test
    fun `a newer schema, damaged settings and damaged rows are refused`() {
        fun damaged(vararg sql: String): File = EmbedGolden.indexFile("int8").also { f -> JdbcSqlDatabase.open(f).use { db -> sql.forEach { db.update(it) } } }

        val newer = damaged("PRAGMA user_version = 2")
        assertEquals(
            "${newer.path} has index schema 2, newer than this app reads (1); update the app",
            assertThrows<IndexInvalid> { VectorIndex.open(newer, embedder(), JdbcSqlDatabase::open) }.message,
        )
        val settings = damaged("DELETE FROM meta WHERE key = 'precision'")
        assertEquals(
            "${settings.path}: the index's settings are damaged ([dim, fingerprint]); rebuild the index",
            assertThrows<IndexInvalid> { VectorIndex.open(settings, embedder(), JdbcSqlDatabase::open) }.message,
        )
        val precision = damaged("UPDATE meta SET value = 'float64' WHERE key = 'precision'")
        assertTrue(assertThrows<IndexInvalid> { VectorIndex.open(precision, embedder(), JdbcSqlDatabase::open) }.message!!.contains("settings are damaged"))
        val noMeta = damaged("DELETE FROM meta")
        assertTrue(assertThrows<IndexInvalid> { VectorIndex.open(noMeta, embedder(), JdbcSqlDatabase::open) }.message!!.contains("is an empty index (no model recorded)"))
        val dropped = damaged("DROP TABLE meta")
        assertTrue(assertThrows<IndexInvalid> { VectorIndex.open(dropped, embedder(), JdbcSqlDatabase::open) }.message!!.contains("is not a readable edgeopt index ("))
        val short = damaged("UPDATE items SET vector = x'0102' WHERE id = 'a01'")
        VectorIndex.open(short, embedder(), JdbcSqlDatabase::open).use { index ->
            assertEquals(
                "${short.path}: index rows are not ${EmbedGolden.dim} int8 values each (row 'a01' has 2 bytes); the file is damaged: rebuild it",
                assertThrows<IndexInvalid> { index.search(FloatArray(EmbedGolden.dim) { 1f }, 3) }.message,
            )
        }
    }

    @Test
    fun `rows another connection changes are read again`() {
        val file = EmbedGolden.indexFile("int8")
        VectorIndex.open(file, embedder(), JdbcSqlDatabase::open).use { index ->
            val query = FloatArray(EmbedGolden.dim) { 1f }
            val before = index.search(query, 100)
            JdbcSqlDatabase.open(file).use { it.update("DELETE FROM items WHERE id = ?", before.first().id) }
            val after = index.search(query, 100)
            assertEquals(before.drop(1).map { it.id }, after.map { it.id })
        }
    }

    @Test
    fun `float16 decoding is exact for every half`() {
        for (bits in 0 until 0x10000) {
            val sign = if (bits and 0x8000 != 0) -1.0 else 1.0
            val exponent = (bits ushr 10) and 0x1F
            val mantissa = bits and 0x3FF
            val got = halfToFloat(bits)
            when {
                exponent == 0x1F && mantissa != 0 -> assertTrue(got.isNaN(), "0x${Integer.toHexString(bits)}")
                exponent == 0x1F -> assertEquals(sign * Double.POSITIVE_INFINITY, got.toDouble())
                else -> {
                    val want = if (exponent == 0) sign * mantissa * 2.0.pow(-24) else sign * (1 + mantissa / 1024.0) * 2.0.pow(exponent - 15)
                    assertEquals(want, got.toDouble(), 0.0, "0x${Integer.toHexString(bits)}")
                }
            }
        }
        assertEquals((-0.0f).toRawBits(), halfToFloat(0x8000).toRawBits())
        assertEquals(65504f, halfToFloat(0x7BFF))
        assertEquals(1f, halfToFloat(0x3C00))
        assertEquals(-2f, halfToFloat(0xC000))
    }
}
