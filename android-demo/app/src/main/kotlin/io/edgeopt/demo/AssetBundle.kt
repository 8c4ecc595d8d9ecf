package io.edgeopt.demo

import android.content.res.AssetManager
import io.edgeopt.core.BundleFiles
import java.io.FileNotFoundException
import java.io.InputStream

/** A bundle shipped in the APK's assets under [root] (assets cannot hold symbolic links, so none escapes). */
class AssetBundle(private val assets: AssetManager, private val root: String = "bundle") : BundleFiles {
    override val location: String get() = "assets/$root"

    override fun open(name: String): InputStream? = try {
        assets.open("$root/$name")
    } catch (e: FileNotFoundException) {
        null
    }

    fun bytes(name: String): ByteArray =
        open(name)?.use { it.readBytes() } ?: throw FileNotFoundException("$location/$name")
}
